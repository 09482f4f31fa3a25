"""Training and evaluation of a standalone network.

Recipe: SGD + Nesterov, cosine schedule with linear warmup (stepped per batch), label smoothing,
no weight decay on BN/biases, channels-last on CPU, optional mixed precision on CUDA.
A run directory holds `config.json`, `arch.json`, `metrics.{csv,jsonl}`, `checkpoint.pt`
(written atomically after every epoch, every `checkpoint_every` steps, and on Ctrl-C or SIGTERM before
stopping), and at the end `weights.safetensors` and `result.json`.

Under torchrun (`proxyless.infra.distributed`) each process trains on its share of every global batch
through DistributedDataParallel and evaluates a share of the test split; rank 0 writes the files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset
from tqdm import tqdm

from proxyless.arch import Arch, save_arch
from proxyless.infra.atomic import atomic_write_text, remove_stale_temps
from proxyless.infra.checkpoint import load_checkpoint, load_state, save_checkpoint, save_weights
from proxyless.data import Splits, make_loader
from proxyless.infra.device import resolve_device
from proxyless.infra.distributed import Dist, restore_rng, rng_states
from proxyless.errors import NonFiniteLossError, UserError, check_field_types, check_positive_flags
from proxyless.infra.signals import StopSignals, stop_signals
from proxyless.infra.metrics import run_logs, topk_correct
from proxyless.optim import make_scheduler, make_sgd
from proxyless.profile import profile

log = logging.getLogger("proxyless")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = True
    num_workers: int = 0
    progress: bool = True
    tensorboard: bool = False  # also write the metrics rows as a TensorBoard event file
    checkpoint_every: int = 0  # steps; 0: only at the end of each epoch

    def __post_init__(self) -> None:
        check_field_types(self)
        check_positive_flags(self, "epochs", "batch_size")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or self.num_workers < 0 or self.checkpoint_every < 0:
            raise UserError("--weight-decay, --warmup-epochs, --workers and --checkpoint-every must not be negative")


class Trainer:
    """Trains `net` on `splits`; construction validates everything and touches no file.

    `run(run_dir)` trains into `run_dir`; `run(run_dir, resume=True)` continues from its `checkpoint.pt`.
    """

    def __init__(self, arch: Arch, net: nn.Module, splits: Splits, config: TrainConfig, dist: Dist | None = None) -> None:
        self.arch, self.splits, self.config = arch, splits, config
        self.dist = dist or Dist(device=resolve_device(config.device))
        self.device = self.dist.device
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.net = net.to(self.device, memory_format=self.memory_format)
        self.model = self.dist.wrap(self.net)  # what the training steps run: DDP under torchrun
        self.steps_per_epoch = len(splits.train) // (config.batch_size * self.dist.world)
        if self.steps_per_epoch == 0:
            raise UserError(
                f"--batch-size {config.batch_size} × {self.dist.world} process(es) is larger than the "
                f"{len(splits.train)} training images; lower it"
            )
        self.optimizer = make_sgd(self.net, config.lr, config.momentum, config.weight_decay)
        total = self.steps_per_epoch * config.epochs
        warmup = min(round(config.warmup_epochs * self.steps_per_epoch), total // 5)  # at most a fifth of the run
        self.scheduler = make_scheduler(self.optimizer, total, warmup)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

    def run(self, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
        self.run_dir = Path(run_dir)
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        if resume and self.dist.main:
            remove_stale_temps(self.checkpoint_path)
        start_epoch, step, totals = self._restore() if resume and self.checkpoint_path.exists() else (0, 0, None)
        log.info("training %s on %s (%d process(es)) -> %s", self.arch.name or self.arch.space.name,
                 self.splits.source, self.dist.world, self.run_dir)
        if (start_epoch, step) == (0, 0):
            torch.manual_seed(self.config.seed + self.dist.rank)  # each process its own augmentations
            if self.dist.main:
                self._write_run_files()
        logs = run_logs(self.run_dir, start_epoch, self.config.tensorboard) if self.dist.main else []
        started = time.perf_counter()
        test = None  # the last epoch's test metrics: the final weights', unless no epoch is left to run
        with stop_signals() as stop:  # Ctrl-C: a checkpoint after the current step, then Interrupted
            for epoch in range(start_epoch, self.config.epochs):
                row = self.train_epoch(epoch, step, totals, stop)
                step, totals = 0, None
                test = self.evaluate()
                row.update({f"test_{k}": v for k, v in test.items()})
                for metrics in logs:
                    metrics.append(row)
                saved = self._save(epoch + 1)
                log.info(_format_row(row))
                if epoch + 1 < self.config.epochs:
                    stop.check(lambda: saved, self.dist.any)  # the checkpoint just written is the one to keep
        for metrics in logs:
            metrics.close()
        return self._finish(time.perf_counter() - started, test or self.evaluate())

    def train_epoch(self, epoch: int, start: int = 0, totals: dict | None = None,
                    stop: StopSignals | None = None) -> dict[str, Any]:
        """Epoch `epoch` from batch `start` (with the `totals` of the batches before it); returns the
        epoch's metrics row. On a stop signal: a checkpoint after the current step, then `Interrupted`."""
        self.net.train()
        cfg, stop = self.config, stop or StopSignals()
        loader = self.dist.epoch_loader(self.splits.train, cfg.batch_size, cfg.seed, epoch, start, cfg.num_workers)
        totals = dict(totals or {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0})
        started = time.perf_counter() - totals["seconds"]  # the time of the steps before a resume counts too
        global_batch = cfg.batch_size * self.dist.world
        bar = tqdm(total=self.steps_per_epoch * global_batch, initial=start * global_batch, unit="img",
                   unit_scale=True, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and self.dist.main))
        with bar:
            for step, (images, targets) in enumerate(loader, start=start):
                loss, correct = self._train_step(images, targets, epoch, step)
                totals["loss"] += loss * len(targets)
                totals["correct"] += correct
                totals["seen"] += len(targets)
                totals["seconds"] = time.perf_counter() - started
                bar.update(len(targets) * self.dist.world)
                bar.set_postfix(loss=f"{totals['loss'] / totals['seen']:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.4f}")
                stop.check(lambda: self._save(epoch, step + 1, totals), self.dist.any)
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < self.steps_per_epoch:
                    self._save(epoch, step + 1, totals)
        seconds = time.perf_counter() - started
        loss, correct, seen = self.dist.sum([totals["loss"], totals["correct"], totals["seen"]])  # over ranks
        return {
            "epoch": epoch + 1,
            "train_loss": loss / seen,
            "train_top1": correct / seen,
            "lr": self.scheduler.get_last_lr()[0],
            "images_per_s": seen / seconds,
            "epoch_seconds": seconds,
        }

    def _train_step(self, images: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) -> tuple[float, int]:
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        targets = targets.to(self.device, non_blocking=True)
        with self._autocast():
            logits = self.model(images)  # (B, classes)
            loss = self.criterion(logits, targets)
        if self.dist.any(not torch.isfinite(loss)):  # every rank stops, not only the one that saw it
            raise NonFiniteLossError(
                f"loss became {loss.item()} at epoch {epoch + 1}, step {step}; lower --lr "
                f"(the last checkpoint, {self.checkpoint_path}, is intact)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item(), int((logits.argmax(1) == targets).sum())

    def evaluate(self) -> dict[str, float]:
        """Test metrics of rank 0's net, each process evaluating a share of the test split."""
        self.dist.sync_buffers(self.net)
        share = Subset(self.splits.test, self.dist.eval_indices(len(self.splits.test)))
        sums = evaluate_sums(self.net, share, self.config.batch_size, self.device, self.memory_format,
                             self.config.progress and self.dist.main)
        loss, top1, top5, seen = self.dist.sum([sums["loss"], sums["top1"], sums["top5"], sums["seen"]])
        return {"loss": loss / seen, "top1": top1 / seen, "top5": top5 / seen}

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _write_run_files(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_arch(self.arch, self.run_dir / "arch.json")
        config = {"train": asdict(self.config), "data": self.splits.source, "torch": torch.__version__}
        atomic_write_text(self.run_dir / "config.json", json.dumps(config, indent=2) + "\n")

    def _save(self, epoch: int, step: int = 0, totals: dict | None = None) -> str:
        """Everything a resume needs to continue epoch `epoch` (0-based) at batch `step`; says what it saved."""
        rng, totals = rng_states(self.dist), self.dist.gather(totals)  # every rank's, collected on all
        saved = f"saved {self.checkpoint_path} at epoch {epoch + 1}, step {step}"
        if not self.dist.main:
            return saved
        save_checkpoint(
            {
                "arch": self.arch.to_dict(),
                "model": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "epoch": epoch,
                "step": step,
                "totals": totals,
                "rng": rng,
                "config": asdict(self.config),
            },
            self.checkpoint_path,
        )
        return saved

    def _restore(self) -> tuple[int, int, dict | None]:
        state = load_checkpoint(self.checkpoint_path, self.arch)
        load_state(self.net, state["model"], str(self.checkpoint_path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng(self.dist, state["rng"], str(self.checkpoint_path))
        step, totals = int(state.get("step", 0)), state.get("totals")
        log.info("resuming %s at epoch %d, step %d", self.run_dir, state["epoch"] + 1, step)
        return int(state["epoch"]), step, totals[self.dist.rank] if isinstance(totals, list) else totals

    def _finish(self, seconds: float, metrics: dict[str, float]) -> dict[str, Any]:
        test = {f"test_{k}": v for k, v in metrics.items()}
        if not self.dist.main:
            return {"arch": self.arch.name, **test}
        save_weights(self.net, self.run_dir / "weights.safetensors")
        result = {
            "arch": self.arch.name,
            **test,
            **vars(profile(self.net, self.arch.space.input_size)),
            "train_seconds_this_session": seconds,
            "processes": self.dist.world,
        }
        atomic_write_text(self.run_dir / "result.json", json.dumps(result, indent=2) + "\n")
        return result


def evaluate(net: nn.Module, dataset: torch.utils.data.Dataset, batch_size: int, device: torch.device,
             memory_format: torch.memory_format = torch.contiguous_format, progress: bool = True) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy over `dataset` in eval mode."""
    sums = evaluate_sums(net, dataset, batch_size, device, memory_format, progress)
    return {"loss": sums["loss"] / sums["seen"], "top1": sums["top1"] / sums["seen"], "top5": sums["top5"] / sums["seen"]}


@torch.no_grad()
def evaluate_sums(net: nn.Module, dataset: torch.utils.data.Dataset, batch_size: int, device: torch.device,
                  memory_format: torch.memory_format = torch.contiguous_format, progress: bool = True) -> dict[str, float]:
    """Summed loss, top-1 and top-5 hits and the number of images (to add over processes)."""
    net.eval()
    loader = make_loader(dataset, batch_size, train=False)
    loss, top1, top5, seen = 0.0, 0, 0, 0
    for images, targets in tqdm(loader, desc="eval", unit="batch", disable=not progress, leave=False):
        images = images.to(device).contiguous(memory_format=memory_format)
        targets = targets.to(device)
        logits = net(images)  # (B, classes)
        loss += nn.functional.cross_entropy(logits.float(), targets, reduction="sum").item()
        c1, c5 = topk_correct(logits, targets, (1, 5))
        top1, top5, seen = top1 + c1, top5 + c5, seen + len(targets)
    return {"loss": loss, "top1": top1, "top5": top5, "seen": seen}


def _format_row(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']}"]
    for key, value in row.items():
        if key != "epoch":
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) and math.isfinite(value) else f"{key} {value}")
    return "  ".join(parts)
