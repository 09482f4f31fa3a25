"""The search loop: warmup, then weight steps on the train split alternating with architecture steps
on the held-out valid split; per-epoch logs, arch history and atomic, resumable checkpoints.

The loop itself (epochs, progress, checkpoints, stop signals, resume, logs) is the resumable-run
engine, `proxyless.infra.engine`, which training runs on too; `Searcher` adds the steps and rows.
Every random choice is a function of (seed, position), so a run resumed from any checkpoint, even one
taken mid-epoch, replays exactly what the uninterrupted run would have done:
    path samples       generator seeded by (seed, global step)
    train batch order  permutation seeded by (seed, epoch); a resumed epoch skips the batches done
    valid batch order  permutation seeded by (seed, epoch); arch step j of an epoch uses batch j
    augmentation       torch's global RNG of each process, saved in the checkpoint

A search for several latency targets at once (a family, `proxyless.search.family`) runs here too: the
weights are shared, each target has its own α, strategy and derive rule (an `Arm`), weight step s after
the warmup samples its path from arm s mod K, and architecture step j samples from arm j mod K and updates
every arm's α from that one measurement (the gradient strategy's; REINFORCE updates arm j mod K only).
A single search is a family of one.

Under torchrun (`proxyless.infra.distributed`) each global batch of those permutations is split across the
processes, the paths of every step are checked to be the same on all of them, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from proxyless.arch import save_arch
from proxyless.errors import UserError, check_field_types, check_positive_flags
from proxyless.infra.atomic import atomic_write_text
from proxyless.infra.distributed import Dist, keyed_generator
from proxyless.infra.engine import ResumableRun, Totals
from proxyless.optim import load_schedule, make_scheduler, make_sgd
from proxyless.search.derive import argmax_rule
from proxyless.search.family import Arm, Derive, initial_alphas, use, write_listing
from proxyless.search.quality import recalibrate_bn
from proxyless.search.sampling import SAMPLINGS, fair_largest_plan, fair_plan
from proxyless.search.signal import CLEAR_SIGNAL
from proxyless.search.strategies import ArchStrategy, entropy
from proxyless.search.supernet import SuperNet

log = logging.getLogger("proxyless")


@dataclass(frozen=True)
class SearchConfig:
    epochs: int = 4
    warmup_epochs: int | None = None  # weight-only epochs first; None: a quarter of the epochs, rounded down
    batch_size: int = 64
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 4e-5
    arch_lr: float | None = None  # None: scaled to the number of arch steps (`with_arch_budget`)
    arch_every: int | None = None  # None: as often as gives MIN_ARCH_STEPS, every 2nd to 5th weight step
    strategy: str = "gradient"
    mode: str = "two"
    # chosen by benchmarks/supernet_probe.py and search_quality.py: independent candidates with sampled paths
    # do not train (the probe's loss 2.33 -> 2.27 against 1.60 on a fixed path; entangled 1.73)
    weights: str = "entangled"  # or "independent" (the paper's): each candidate its own weights
    sampling: str = "fair"  # warmup paths: "fair", "fair-largest" or "uniform" (see `search.sampling`)
    # the scale (project BN γ) the residual branches of shape-keeping candidates start at; 0: as the identity.
    # In a short search they barely grow (|γ| 0.005-0.02 after 8 epochs on NAS-Bench-Macro), so the supernet
    # sees an MBConv and a skip there alike; starting them at full scale (1) did not rank nets better there
    # (benchmarks/search_quality.py, variant entangled-fair-unit-residual)
    residual_init: float = 0.0
    # weight steps never take a layer's identity (zero, or a shape-keeping skip): the weights train at full
    # depth and only the architecture steps try a layer away, so removing one costs what it costs a net that
    # relies on it. The idea: sampled identities train the supernet like stochastic depth, robust to a
    # missing layer, and on NAS-Bench-Macro α keeps more skips than the band's average net while the truth
    # charges for each (benchmarks/derive_rules.py). Measured there: level with the default (mean regret
    # 0.56 against 0.57 over six searches), still 3-4 skips at the tighter targets, so off by default
    full_depth_weights: bool = False
    bn_batches: int = 8  # train batches that recalibrate BN before each epoch's argmax is evaluated (0: none)
    seed: int = 0
    checkpoint_every: int = 0  # steps; 0: only at the end of each epoch
    channels_last: bool = True
    num_workers: int = 0
    progress: bool = True
    tensorboard: bool = False  # also write the metrics rows as a TensorBoard event file

    def __post_init__(self) -> None:
        check_field_types(self)
        check_positive_flags(self, "epochs", "batch_size", "arch_every")  # arch_every None: scaled to the run
        if self.warmup_epochs is None:
            object.__setattr__(self, "warmup_epochs", default_warmup(self.epochs))
        if not 0 <= self.warmup_epochs < self.epochs:
            raise UserError(f"--warmup-epochs must be in [0, --epochs), got {self.warmup_epochs} of {self.epochs}")
        if self.lr <= 0 or (self.arch_lr is not None and self.arch_lr <= 0):
            raise UserError("--lr and --arch-lr must be positive")
        if self.weights not in WEIGHTS:
            raise UserError(f"--weights must be {' or '.join(WEIGHTS)}, got {self.weights!r}")
        if not 0.0 <= self.residual_init <= 1.0:
            raise UserError(f"--residual-init must be zero, unit or a scale in [0, 1], got {self.residual_init}")
        if self.sampling not in SAMPLINGS:
            raise UserError(f"--sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.bn_batches < 0:
            raise UserError(f"--bn-batches must not be negative, got {self.bn_batches}")
        if self.strategy not in ("gradient", "reinforce"):
            raise UserError(f"--strategy must be gradient or reinforce, got {self.strategy!r}")
        if self.mode not in ("two", "full"):
            raise UserError(f"--mode must be two or full, got {self.mode!r}")
        if self.checkpoint_every < 0:
            raise UserError("--checkpoint-every must not be negative")


WEIGHTS = ("independent", "entangled")
ARCH_TRAVEL = 8.0  # logits α can travel over a search: Adam (β1 = 0) moves each logit by about lr a step
MIN_ARCH_STEPS = 100


def with_arch_budget(config: SearchConfig, train_images: int, world: int = 1, turns: int = 1) -> SearchConfig:
    """`config` with arch_lr and arch_every resolved for a search of `train_images` images (given values are
    kept): an arch step as often as gives MIN_ARCH_STEPS (every 2nd to 5th weight step: an arch step costs
    about two weight steps), and a step size that lets α travel ARCH_TRAVEL logits over the search, however
    short (31 steps at 1e-3 left α uniform). In a family whose α take the arch steps in `turns`
    (`arch_turns`), each α gets that share of them, so its step size is scaled to that share."""
    steps = train_images // (config.batch_size * world) * (config.epochs - config.warmup_epochs)
    every = config.arch_every or max(2, min(5, steps // MIN_ARCH_STEPS))
    lr = config.arch_lr or min(0.5, max(1e-3, ARCH_TRAVEL / max(1, steps // every // turns)))
    return replace(config, arch_lr=float(lr), arch_every=every)


def arch_turns(config: SearchConfig, targets: int) -> int:
    """Among how many α of a family of `targets` the arch steps are divided: one (every α learns from each
    step) for the two-path gradient, whose measurement carries over to every α; for REINFORCE and the
    full (all-path) gradient, each target's α takes every K-th step."""
    return 1 if config.strategy == "gradient" and config.mode == "two" else max(1, targets)


def default_warmup(epochs: int) -> int:
    """Weight-only epochs when none are asked for: a quarter, rounded down, so that a short run still
    searches α (1-3 epochs: none, 4: one, 10: two)."""
    return max(0, epochs // 4) if isinstance(epochs, int) else 0


class Searcher(ResumableRun):
    """Runs a search of `supernet` with `strategy` (or a family: one `Arm` per target) on the resumable-run
    engine; construction validates and touches no file."""

    kind = "search"

    def __init__(self, supernet: SuperNet, strategy: ArchStrategy | Sequence[Arm], train: Dataset, valid: Dataset,
                 config: SearchConfig, device: torch.device, derive: Derive | None = None,
                 dist: Dist | None = None, source: str = "the given datasets") -> None:
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.supernet = supernet.to(device, memory_format=self.memory_format)
        self.dist = dist or Dist(device=device)
        # weight steps run through DDP; a step uses one path per layer, so the others are unused
        self.model = self.dist.wrap(self.supernet, find_unused_parameters=True)
        self.train_set, self.valid, self.source = train, valid, source
        self.arms = list(strategy) if isinstance(strategy, Sequence) else [Arm("", strategy, derive or argmax_rule)]
        for arm in self.arms[1:]:
            arm.alphas = arm.alphas or initial_alphas(self.supernet)
        # each arm's strategy was made with the same; whether every α learns from each arch step
        self.shared_steps = all(arm.strategy.shares_steps for arm in self.arms)
        config = with_arch_budget(config, len(train), self.dist.world, 1 if self.shared_steps else len(self.arms))
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
        # each layer's candidate with the most weights, the path of every other warmup step (fair-largest)
        self.largest = [m.largest() for m in supernet.mixed_ops()] if config.sampling == "fair-largest" else []
        # the candidates a weight step may train at each layer (None: all of them)
        self.trainable = ([[i for i in range(len(m.specs)) if not m.is_zero(i)] for m in supernet.mixed_ops()]
                          if config.full_depth_weights else None)

    def run(self, run_dir: str | Path, resume: bool = False,
            restored: Callable[[], None] | None = None) -> dict[str, Any]:
        """Search every epoch left, then derive; returns {"arch": Arch, "arch_json", "derived_by"}."""
        super().run(run_dir, resume, restored)
        return self.finish()

    @property
    def family(self) -> bool:
        return len(self.arms) > 1

    @property
    def histories(self) -> tuple[str, ...]:
        """arch_history.jsonl; a family's in one subdirectory per target."""
        return tuple(f"{arm.label}/arch_history" if arm.label else "arch_history" for arm in self.arms)

    def begin(self, fresh: bool) -> None:
        for arm in self.arms:
            (self.run_dir / arm.label).mkdir(exist_ok=True)
        if self.family:
            log.info("a family of %d targets (%s) on one supernet: each its own α, the weights shared",
                     len(self.arms), ", ".join(arm.label for arm in self.arms))
        log.info("searching %s on %s (%d train / %d valid images, %d process(es) of %d thread(s)) -> %s",
                 self.supernet.space.name, self.source, len(self.train_set), len(self.valid), self.dist.world,
                 torch.get_num_threads(), self.run_dir)
        log.info("%s weights, %s warmup paths; an arch step every %d weight steps, arch lr %.3g",
                 "entangled" if self.supernet.entangled else "independent",  # a tree space's edges: independent
                 self.config.sampling, self.config.arch_every, self.config.arch_lr)

    def begin_epoch(self, epoch: int) -> None:
        self.checks_before = self.dist.checks

    def describe(self, epoch: int) -> str:
        return f"search {epoch + 1}/{self.config.epochs}"

    def summary(self, rows: dict[str, dict[str, Any]]) -> str:
        row = rows["metrics"]
        line = f"epoch {row['epoch']}  train loss {row['train_loss']:.3f}  train top-1 {row['train_top1']:.3f}  "
        for arm in self.arms:
            line += (f"{arm.label + ': ' if arm.label else ''}valid top-1 (argmax arch) "
                     f"{row[arm.key('valid_top1_argmax')]:.3f}  mean entropy {row[arm.key('mean_entropy')]:.3f}  ")
        return line + f"arch steps {row['arch_steps']}"

    def step(self, images: torch.Tensor, targets: torch.Tensor, epoch: int, step: int, totals: Totals) -> None:
        """A weight step, and after warmup an architecture step every `arch_every` of them."""
        cfg = self.config
        generator = keyed_generator(cfg.seed, epoch * self.steps_per_epoch + step)
        loss, correct = self.weight_step(images, targets, self.weight_plan(epoch, step, generator))
        totals.add(loss, correct, len(targets))
        if epoch >= cfg.warmup_epochs and (step + 1) % cfg.arch_every == 0:
            index = (step + 1) // cfg.arch_every - 1
            lead = self.arms[(epoch * (self.steps_per_epoch // cfg.arch_every) + index) % len(self.arms)]
            self.arch_step(epoch, index, generator, lead)
            totals.last_arch_step = {key: value for arm in self.arms for key, value in arm.suffixed(arm.last).items()}
            totals.arch_steps += 1

    def weight_plan(self, epoch: int, step: int, generator: torch.Generator) -> list[int]:
        """The path of a weight step: during warmup uniform or strictly fair, then drawn from p (in a family,
        the p of each target in turn)."""
        if epoch >= self.config.warmup_epochs:
            with use(self.supernet, self.arms, (epoch * self.steps_per_epoch + step) % len(self.arms)):
                return self.supernet.sample_single(generator, among=self.trainable)
        if self.config.sampling == "uniform":
            return self.supernet.sample_single(generator, uniform=True, among=self.trainable)
        # the fair plans pick positions among each layer's trainable candidates
        trainable = self.trainable or [list(range(len(m.specs))) for m in self.supernet.mixed_ops()]
        sizes, global_step = [len(t) for t in trainable], epoch * self.steps_per_epoch + step
        if self.config.sampling == "fair":
            plan = fair_plan(sizes, self.config.seed, global_step)
        else:
            largest = [t.index(index) for t, index in zip(trainable, self.largest)]
            plan = fair_largest_plan(sizes, largest, self.config.seed, global_step)
        return [t[position] for t, position in zip(trainable, plan)]

    def weight_step(self, images: torch.Tensor, targets: torch.Tensor, plan: list[int]) -> tuple[float, int]:
        """One path per layer: only its ops run, get gradients, and are updated."""
        self.supernet.train()
        self.dist.check_same(plan, "the paths of a weight step")
        images, targets = self._to_device(images), targets.to(self.device)
        logits = self.model(images, plan)  # (B, classes)
        loss = self.criterion(logits, targets)
        self.check_finite(loss, "search loss", " in a weight step")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.item(), int((logits.argmax(1) == targets).sum())

    def arch_step(self, epoch: int, index: int, generator: torch.Generator, lead: Arm) -> None:
        """Architecture step `index` of `epoch` on its valid batch (this rank's share of it): measured with
        the α of `lead`, and learnt from by every arm when their strategies share steps (else by `lead`)."""
        order = torch.randperm(len(self.valid), generator=keyed_generator(self.config.seed, epoch, 1))
        start = (index % self.valid_batches) * self.global_batch
        rows = order[start:start + self.global_batch][self.dist.rank::self.dist.world].tolist()
        images = self._to_device(torch.stack([self.valid[i][0] for i in rows]))
        targets = torch.tensor([int(self.valid[i][1]) for i in rows], device=self.device)
        self.supernet.train()
        with use(self.supernet, self.arms, self.arms.index(lead)):
            measured = lead.strategy.measure(self.supernet, images, targets, generator)
        for position, arm in enumerate(self.arms):
            if arm is lead or self.shared_steps:
                with use(self.supernet, self.arms, position):
                    arm.last = arm.strategy.learn(self.supernet, measured)

    @torch.no_grad()
    def end_of_epoch(self, epoch: int, totals: Totals) -> dict[str, dict[str, Any]]:
        """The metrics row and the arch-history rows of a finished epoch (totals added over ranks); in a
        family, each target's argmax columns carry its label ('valid_top1_argmax@46ms')."""
        sums = self.epoch_sums(totals)
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": sums.loss, "train_top1": sums.top1}
        histories, scores = {}, {}  # targets with the same argmax (all of them during the warmup): scored once
        for index, (arm, history) in enumerate(zip(self.arms, self.histories)):
            with use(self.supernet, self.arms, index):
                probs = self.supernet.probs()
                argmax = self.supernet.argmax()
            arch = self.supernet.arch_of(argmax)
            if tuple(argmax) not in scores:
                scores[tuple(argmax)] = self.evaluate_plan(argmax, epoch)
            row.update(arm.suffixed({"valid_top1_argmax": scores[tuple(argmax)],
                                     "mean_entropy": sum(entropy(p) for p in probs) / len(probs),
                                     **signal_of(arm)}))
            histories[history] = {"epoch": epoch + 1, "ops": arch.op_strings(), "probs": [p.tolist() for p in probs],
                                  "entropy": [entropy(p) for p in probs]}
            row[arm.key("argmax")] = " ".join(arch.op_strings())
        row.update({
            "arch_steps": totals.arch_steps,
            "lr": self.scheduler.get_last_lr()[0],
            "epoch_seconds": sums.seconds,  # its weight and arch steps, over every session that ran them
            **totals.last_arch_step,  # e.g. the latency of the argmax arch and the latency weight
            "path_checks": self.dist.checks - self.checks_before,  # steps whose paths were compared across ranks
        })
        return {"metrics": row, **histories}

    @torch.no_grad()
    def evaluate_plan(self, plan: list[int], epoch: int) -> float:
        """Top-1 of one single-path plan on the valid split, each rank a share of it; BN statistics first
        recalibrated on that path (`bn_batches` train batches), since running statistics averaged over
        random paths describe no one subnet, and restored after."""
        self.dist.sync_buffers(self.supernet)
        share = Subset(self.valid, self.dist.eval_indices(len(self.valid)))
        loader = DataLoader(share, batch_size=self.config.batch_size * 2)
        with self.recalibrated(plan, epoch):
            correct = sum(int((self.supernet(self._to_device(x), plan).argmax(1) == y.to(self.device)).sum())
                          for x, y in loader)
        return self.dist.sum([correct])[0] / len(self.valid)

    def recalibrated(self, plan: list[int], epoch: int) -> contextlib.AbstractContextManager:
        """BN recalibrated on `plan` with this epoch's first `bn_batches` train batches (eval mode inside)."""
        if self.config.bn_batches == 0:
            self.supernet.eval()
            return contextlib.nullcontext()
        order = torch.randperm(len(self.train_set), generator=keyed_generator(self.config.seed, epoch, 2))
        rows = order[: self.config.bn_batches * self.config.batch_size].tolist()
        batches = DataLoader(Subset(self.train_set, rows), batch_size=self.config.batch_size)
        return recalibrate_bn(self.supernet, plan, (x for x, _ in batches), memory_format=self.memory_format)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device).contiguous(memory_format=self.memory_format)  # (B, 3, H, W)

    # -- files --------------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Derive each target's net and write its arch.json and result.json (a family's in one subdirectory
        per target, and a result.json listing them at the top); returns the single search's result, or
        {"members": [each target's]}."""
        members = []
        for index, arm in enumerate(self.arms):
            with use(self.supernet, self.arms, index):
                indices, how = arm.derive(self.supernet)  # the same on every rank: α is
            where = self.run_dir / arm.label
            name = f"searched-{self.run_dir.name}" + (f"-{arm.label}" if arm.label else "")
            arch = self.supernet.arch_of(indices, name=name)
            result = {"arch": arch.op_strings(), "arch_json": str(where / "arch.json"), "derived_by": how,
                      **signal_of(arm)}
            warn_if_noise(arm, self.dist.main)
            if self.dist.main:
                save_arch(arch, where / "arch.json")
                atomic_write_text(where / "result.json", json.dumps(result, indent=2) + "\n")
            members.append({**result, "arch": arch, "label": arm.label, "index": index})
        if not self.family:
            return members[0]
        if self.dist.main:
            write_listing(self.run_dir, members)
        return {"members": members}

    def state_dict(self) -> dict[str, Any]:
        return {
            "space": self.supernet.space.to_dict(),
            "weights": "entangled" if self.supernet.entangled else "independent",  # how to rebuild the supernet
            "supernet": self.supernet.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "strategy": self.arms[0].strategy.state_dict(),  # the single search's, or the family's first target's
            # a family's targets; the first's α is the supernet's (its "alphas" empty)
            **({"family": [{"label": arm.label, "alphas": arm.alphas, "strategy": arm.strategy.state_dict()}
                           for arm in self.arms]} if self.family else {}),
            "config": asdict(self.config),
        }

    def load_state_dict(self, state: dict[str, Any], where: Path) -> None:
        if state.get("space") != self.supernet.space.to_dict():
            raise UserError(f"{where}: not a checkpoint of a search over this space; "
                            "resume with the --space it was started with")
        saved = weights_of(state)
        if saved != ("entangled" if self.supernet.entangled else "independent"):
            raise UserError(f"{where}: the checkpoint holds a supernet with {saved} weights; "
                            f"resume with --weights {saved}")
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        load_schedule(self.scheduler, state["scheduler"])
        self.arms[0].strategy.load_state_dict(state["strategy"])
        saved = state.get("family", [{"label": ""}])
        if [arm.label for arm in self.arms] != [member["label"] for member in saved]:
            raise UserError(f"{where}: the checkpoint holds a search for other latency targets; "
                            "resume with the --target-latency it was started with")
        for arm, member in zip(self.arms[1:], saved[1:]):
            arm.alphas = [alpha.clone() for alpha in member["alphas"]]
            arm.strategy.load_state_dict(member["strategy"])


def signal_of(arm: Arm) -> dict[str, float]:
    """{"alpha_signal_z": median z of the arm's cross-entropy α gradient so far} (`search.signal`); empty
    for a strategy that records none (REINFORCE) or before two architecture steps."""
    signal = getattr(arm.strategy, "signal", None)
    z = signal.median_z() if signal is not None else None
    return {} if z is None else {"alpha_signal_z": z}


def warn_if_noise(arm: Arm, main: bool) -> None:
    """Say so when α mostly followed noise: its net is then close to a draw from the latency band."""
    z = signal_of(arm).get("alpha_signal_z")
    if main and z is not None and z < CLEAR_SIGNAL:
        log.warning("%sα mostly followed noise: the median z of its cross-entropy gradient over %d architecture "
                    "steps is %.2f (%.0f or more: a drift it could follow), so the derived net is close to a random "
                    "one of its latency; give α more steps (more --epochs, a smaller --arch-every)",
                    f"{arm.label}: " if arm.label else "", arm.strategy.signal.steps, z, CLEAR_SIGNAL)


def weights_of(state: dict[str, Any]) -> str:
    """'entangled' or 'independent': the kind of supernet a search checkpoint holds (checkpoints from
    before entanglement say nothing, and their candidates were independent)."""
    return "entangled" if state.get("weights", state.get("config", {}).get("weights")) == "entangled" else "independent"


def make_sgd_for(supernet: SuperNet, config: SearchConfig) -> torch.optim.SGD:
    """SGD-Nesterov over the supernet's weights only (α has its own optimizer in the strategy)."""
    weights = nn.ParameterList(supernet.weight_parameters())
    return make_sgd(weights, config.lr, config.momentum, config.weight_decay)
