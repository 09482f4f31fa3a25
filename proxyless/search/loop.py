"""The search loop: warmup, then weight steps on the train split alternating with architecture steps
on the held-out valid split; per-epoch logs, arch history and atomic, resumable checkpoints.

Every random choice is a function of (seed, position), so a run resumed from any checkpoint, even one
taken mid-epoch, replays exactly what the uninterrupted run would have done:
    path samples       generator seeded by (seed, global step)
    train batch order  permutation seeded by (seed, epoch); a resumed epoch skips the batches done
    valid batch order  permutation seeded by (seed, epoch); arch step j of an epoch uses batch j
    augmentation       torch's global RNG of each process, saved in the checkpoint

Under torchrun (`proxyless.infra.distributed`) each global batch of those permutations is split across the
processes, the paths of every step are checked to be the same on all of them, and only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from proxyless.arch import save_arch
from proxyless.infra.atomic import atomic_write_text, remove_stale_temps
from proxyless.infra.checkpoint import load_checkpoint, save_checkpoint
from proxyless.infra.distributed import Dist, keyed_generator, restore_rng, rng_states
from proxyless.errors import NonFiniteLossError, UserError, check_field_types, check_positive_flags
from proxyless.infra.signals import StopSignals, stop_signals
from proxyless.infra.metrics import MetricsLog, run_logs
from proxyless.optim import make_scheduler, make_sgd
from proxyless.search.derive import argmax_rule
from proxyless.search.strategies import ArchStrategy, entropy
from proxyless.search.supernet import SuperNet

log = logging.getLogger("proxyless")
Derive = Callable[[SuperNet], tuple[list[int], str]]  # supernet -> (kept index per layer, how they were chosen)


@dataclass(frozen=True)
class SearchConfig:
    epochs: int = 4
    warmup_epochs: int = 1
    batch_size: int = 64
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 4e-5
    arch_lr: float = 1e-3
    arch_every: int = 5
    strategy: str = "gradient"
    mode: str = "two"
    seed: int = 0
    checkpoint_every: int = 0  # steps; 0: only at the end of each epoch
    channels_last: bool = True
    num_workers: int = 0
    progress: bool = True
    tensorboard: bool = False  # also write the metrics rows as a TensorBoard event file

    def __post_init__(self) -> None:
        check_field_types(self)
        check_positive_flags(self, "epochs", "batch_size", "arch_every")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise UserError(f"--warmup-epochs must be in [0, --epochs), got {self.warmup_epochs} of {self.epochs}")
        if self.lr <= 0 or self.arch_lr <= 0:
            raise UserError("--lr and --arch-lr must be positive")
        if self.strategy not in ("gradient", "reinforce"):
            raise UserError(f"--strategy must be gradient or reinforce, got {self.strategy!r}")
        if self.mode not in ("two", "full"):
            raise UserError(f"--mode must be two or full, got {self.mode!r}")
        if self.checkpoint_every < 0:
            raise UserError("--checkpoint-every must not be negative")


class Searcher:
    """Runs a search of `supernet` with `strategy`; construction validates and touches no file."""

    def __init__(self, supernet: SuperNet, strategy: ArchStrategy, train: Dataset, valid: Dataset,
                 config: SearchConfig, device: torch.device, derive: Derive | None = None,
                 dist: Dist | None = None, source: str = "the given datasets") -> None:
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.supernet = supernet.to(device, memory_format=self.memory_format)
        self.dist = dist or Dist(device=device)
        # weight steps run through DDP; a step uses one path per layer, so the others are unused
        self.model = self.dist.wrap(self.supernet, find_unused_parameters=True)
        self.strategy, self.train, self.valid, self.source = strategy, train, valid, source
        self.derive = derive or argmax_rule
        self.config, self.device = config, device
        self.global_batch = config.batch_size * self.dist.world
        self.steps_per_epoch = len(train) // self.global_batch
        self.valid_batches = len(valid) // self.global_batch
        if self.steps_per_epoch == 0 or self.valid_batches == 0:
            raise UserError(
                f"--batch-size {config.batch_size} × {self.dist.world} process(es) is larger than the training "
                f"({len(train)}) or valid ({len(valid)}) split; lower --batch-size or use more data"
            )
        self.optimizer = make_sgd_for(supernet, config)
        # weights: half an epoch of linear warmup, then cosine decay over the whole search
        self.scheduler = make_scheduler(self.optimizer, self.steps_per_epoch * config.epochs, self.steps_per_epoch // 2)
        self.criterion = nn.CrossEntropyLoss()

    # -- the run ------------------------------------------------------------------------------------

    def run(self, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        if resume and self.dist.main:
            remove_stale_temps(self.checkpoint_path)
        epoch, step, totals = self._restore() if resume and self.checkpoint_path.exists() else (0, 0, None)
        log.info("searching %s on %s (%d train / %d valid images, %d process(es)) -> %s", self.supernet.space.name,
                 self.source, len(self.train), len(self.valid), self.dist.world, self.run_dir)
        if (epoch, step) == (0, 0):
            torch.manual_seed(self.config.seed + self.dist.rank)
        main = self.dist.main
        logs = run_logs(self.run_dir, epoch, self.config.tensorboard) if main else []
        history = MetricsLog(self.run_dir, completed_epochs=epoch, name="arch_history", csv=False) if main else None
        with stop_signals() as stop:  # Ctrl-C: a checkpoint after the current step, then Interrupted
            for epoch in range(epoch, self.config.epochs):
                checks = self.dist.checks
                totals = self.search_epoch(epoch, step, totals, stop)
                row, arch_row = self.end_of_epoch(epoch, totals)
                row["path_checks"] = self.dist.checks - checks  # steps whose paths were compared across ranks
                for metrics in logs:
                    metrics.append(row)
                if main:
                    history.append(arch_row)
                saved = self._save(epoch + 1)
                step, totals = 0, None
                log.info(_summary(row))
                if epoch + 1 < self.config.epochs:
                    stop.check(lambda: saved, self.dist.any)  # the checkpoint just written is the one to keep
        for metrics in logs:
            metrics.close()
        return self.finish()

    def search_epoch(self, epoch: int, start: int, totals: dict | None,
                     stop: StopSignals | None = None) -> dict[str, float]:
        """Weight steps (and, after warmup, arch steps) from batch `start` to the end of the epoch;
        on a stop signal, a checkpoint after the current step and `Interrupted`."""
        cfg, stop = self.config, stop or StopSignals()
        totals = totals or {"loss": 0.0, "correct": 0, "seen": 0, "arch_steps": 0}
        loader = self.dist.epoch_loader(self.train, cfg.batch_size, cfg.seed, epoch, start, cfg.num_workers)
        bar = tqdm(total=self.steps_per_epoch * self.global_batch, initial=start * self.global_batch, unit="img",
                   unit_scale=True, desc=f"search {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and self.dist.main))
        with bar:
            for step, (images, targets) in enumerate(loader, start=start):
                generator = keyed_generator(cfg.seed, epoch * self.steps_per_epoch + step)
                loss, correct = self.weight_step(images, targets, generator, uniform=epoch < cfg.warmup_epochs)
                totals.update(loss=totals["loss"] + loss * len(targets), correct=totals["correct"] + correct,
                              seen=totals["seen"] + len(targets))
                if epoch >= cfg.warmup_epochs and (step + 1) % cfg.arch_every == 0:
                    report = self.arch_step(epoch, (step + 1) // cfg.arch_every - 1, generator)
                    totals.update(arch_steps=totals["arch_steps"] + 1, last_arch_step=report)
                bar.update(len(targets) * self.dist.world)
                bar.set_postfix(loss=f"{totals['loss'] / totals['seen']:.3f}")
                stop.check(lambda: self._save(epoch, step + 1, totals), self.dist.any)
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < self.steps_per_epoch:
                    self._save(epoch, step + 1, totals)
        return totals

    def weight_step(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator,
                    uniform: bool) -> tuple[float, int]:
        """One sampled path per layer: only its ops run, get gradients, and are updated."""
        self.supernet.train()
        plan = self.supernet.sample_single(generator, uniform=uniform)
        self.dist.check_same(plan, "the paths of a weight step")
        images, targets = self._to_device(images), targets.to(self.device)
        logits = self.model(images, plan)  # (B, classes)
        loss = self.criterion(logits, targets)
        if self.dist.any(not torch.isfinite(loss)):  # every rank stops, not only the one that saw it
            raise NonFiniteLossError(f"search loss became {loss.item()} in a weight step; lower --lr "
                                     f"(the last checkpoint, {self.checkpoint_path}, is intact)")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.item(), int((logits.argmax(1) == targets).sum())

    def arch_step(self, epoch: int, index: int, generator: torch.Generator) -> dict[str, float]:
        """Architecture step `index` of `epoch` on its valid batch (this rank's share of it)."""
        order = torch.randperm(len(self.valid), generator=keyed_generator(self.config.seed, epoch, 1))
        start = (index % self.valid_batches) * self.global_batch
        rows = order[start:start + self.global_batch][self.dist.rank::self.dist.world].tolist()
        images = self._to_device(torch.stack([self.valid[i][0] for i in rows]))
        targets = torch.tensor([int(self.valid[i][1]) for i in rows], device=self.device)
        self.supernet.train()
        return self.strategy.step(self.supernet, images, targets, generator)

    @torch.no_grad()
    def end_of_epoch(self, epoch: int, totals: dict) -> tuple[dict[str, Any], dict[str, Any]]:
        """The metrics row and the arch-history row of a finished epoch (totals added over ranks)."""
        loss, correct, seen = self.dist.sum([totals["loss"], totals["correct"], totals["seen"]])
        totals = {**totals, "loss": loss, "correct": correct, "seen": seen}
        probs = self.supernet.probs()
        argmax = self.supernet.argmax()
        arch = self.supernet.arch_of(argmax)
        valid_top1 = self.evaluate_plan(argmax)
        row = {
            "epoch": epoch + 1,
            "train_loss": totals["loss"] / max(1, totals["seen"]),
            "train_top1": totals["correct"] / max(1, totals["seen"]),
            "valid_top1_argmax": valid_top1,
            "arch_steps": totals["arch_steps"],
            "mean_entropy": sum(entropy(p) for p in probs) / len(probs),
            "lr": self.scheduler.get_last_lr()[0],
            "argmax": " ".join(arch.op_strings()),
            **totals.get("last_arch_step", {}),  # e.g. the latency of the argmax arch and the latency weight
        }
        arch_row = {"epoch": epoch + 1, "ops": arch.op_strings(), "probs": [p.tolist() for p in probs],
                    "entropy": [entropy(p) for p in probs]}
        return row, arch_row

    @torch.no_grad()
    def evaluate_plan(self, plan: list[int]) -> float:
        """Top-1 of one single-path plan on the valid split (BN in eval mode), each rank a share of it."""
        self.dist.sync_buffers(self.supernet)
        self.supernet.eval()
        share = Subset(self.valid, self.dist.eval_indices(len(self.valid)))
        loader = DataLoader(share, batch_size=self.config.batch_size * 2)
        correct = sum(int((self.supernet(self._to_device(x), plan).argmax(1) == y.to(self.device)).sum())
                      for x, y in loader)
        return self.dist.sum([correct])[0] / len(self.valid)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device).contiguous(memory_format=self.memory_format)  # (B, 3, H, W)

    # -- files --------------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        indices, how = self.derive(self.supernet)  # the same on every rank: α is
        arch = self.supernet.arch_of(indices, name=f"searched-{self.run_dir.name}")
        result = {"arch": arch.op_strings(), "arch_json": str(self.run_dir / "arch.json"), "derived_by": how}
        if self.dist.main:
            save_arch(arch, self.run_dir / "arch.json")
            atomic_write_text(self.run_dir / "result.json", json.dumps(result, indent=2) + "\n")
        return {**result, "arch": arch}

    def _save(self, epoch: int, step: int = 0, totals: dict | None = None) -> str:
        """Everything a resume needs to continue epoch `epoch` (0-based) at batch `step`; says what it saved."""
        rng, totals = rng_states(self.dist), self.dist.gather(totals)  # every rank's, collected on all
        saved = f"saved {self.checkpoint_path} at epoch {epoch + 1}, step {step}"
        if not self.dist.main:
            return saved
        save_checkpoint({
            "kind": "search",
            "space": self.supernet.space.to_dict(),
            "supernet": self.supernet.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "strategy": self.strategy.state_dict(),
            "epoch": epoch,
            "step": step,
            "totals": totals,
            "rng": rng,
            "config": asdict(self.config),
        }, self.checkpoint_path)
        return saved

    def _restore(self) -> tuple[int, int, dict | None]:
        state = load_checkpoint(self.checkpoint_path)
        if state.get("kind") != "search" or state.get("space") != self.supernet.space.to_dict():
            raise UserError(f"{self.checkpoint_path}: not a checkpoint of a search over this space; "
                            "resume with the --space it was started with")
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.strategy.load_state_dict(state["strategy"])
        restore_rng(self.dist, state["rng"], str(self.checkpoint_path))
        log.info("resuming %s at epoch %d, step %d", self.run_dir, state["epoch"] + 1, state["step"])
        totals = state["totals"]
        return int(state["epoch"]), int(state["step"]), totals[self.dist.rank] if isinstance(totals, list) else totals


def make_sgd_for(supernet: SuperNet, config: SearchConfig) -> torch.optim.SGD:
    """SGD-Nesterov over the supernet's weights only (α has its own optimizer in the strategy)."""
    weights = nn.ParameterList(supernet.weight_parameters())
    return make_sgd(weights, config.lr, config.momentum, config.weight_decay)


def write_search_config(run_dir: Path, config: SearchConfig, space_dict: dict, data: str) -> None:
    payload = {"search": asdict(config), "space": space_dict, "data": data, "torch": torch.__version__}
    atomic_write_text(run_dir / "config.json", json.dumps(payload, indent=2) + "\n")


def _summary(row: dict[str, Any]) -> str:
    return (f"epoch {row['epoch']}  train loss {row['train_loss']:.3f}  train top-1 {row['train_top1']:.3f}  "
            f"valid top-1 (argmax arch) {row['valid_top1_argmax']:.3f}  mean entropy {row['mean_entropy']:.3f}  "
            f"arch steps {row['arch_steps']}")
