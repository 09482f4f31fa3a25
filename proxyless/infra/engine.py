"""The resumable-run engine that every long job of the pipeline (search, training) runs on.

A `ResumableRun` subclass says what one step does, what an epoch's log rows are and which state a
checkpoint holds; the engine owns the rest, so a fix to any of it lands once:

    loop          epochs of steps over this rank's batches (`Dist.epoch_loader`), a progress bar
    totals        typed running sums of the epoch (`Totals`), added over ranks at its end
    checkpoints   atomic, after every epoch and every `checkpoint_every` steps, tagged with the run's
                  `kind`, holding the subclass's state, the position (epoch, step), the totals of the
                  epoch so far and every rank's RNG state
    stop signals  Ctrl-C / SIGTERM: a checkpoint after the current step, then `Interrupted`
    resume        from `checkpoint.pt`, removing the temporary file a kill left, to exactly the
                  position, totals and RNG state saved, so a resumed run ends as an uninterrupted one
    logs          one row per epoch in `metrics.{jsonl,csv}` (and TensorBoard), plus any other
                  per-epoch JSON-lines history the subclass names
    bad numbers   `check_finite`: a NaN/inf loss on any rank stops every rank before the step applies

Every random choice of a subclass must be a function of (seed, epoch, step) or of the RNG state the
engine saves; the batch order is a permutation seeded by (seed, epoch), and a resumed epoch skips the
batches already done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from proxyless.errors import NonFiniteLossError, UserError
from proxyless.infra.atomic import remove_stale_temps
from proxyless.infra.checkpoint import load_checkpoint, save_checkpoint
from proxyless.infra.distributed import Dist, restore_rng, rng_states
from proxyless.infra.metrics import MetricsLog, run_logs
from proxyless.infra.signals import StopSignals, stop_signals

log = logging.getLogger("proxyless")


class RunConfig(Protocol):
    """The settings the engine reads from a run's config (`SearchConfig` and `TrainConfig` have them)."""

    epochs: int
    batch_size: int
    seed: int
    checkpoint_every: int  # steps; 0: only at the end of each epoch
    num_workers: int
    progress: bool
    tensorboard: bool


@dataclass
class Totals:
    """Running sums of this rank's epoch so far; a mid-epoch checkpoint saves them."""

    loss: float = 0.0  # summed over images
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # time spent in the epoch's steps, over every session that ran them
    arch_steps: int = 0  # search: architecture steps taken
    last_arch_step: dict[str, float] = field(default_factory=dict)  # search: the last one's report

    def add(self, loss: float, correct: int, count: int) -> None:
        """One step's mean loss and number of correct predictions over `count` images."""
        self.loss += loss * count
        self.correct += correct
        self.seen += count

    @classmethod
    def from_dict(cls, saved: dict[str, Any] | None) -> Totals:
        return cls(**saved) if saved else cls()


@dataclass(frozen=True)
class EpochSums:
    """An epoch's totals added over every rank."""

    loss: float  # mean over images
    top1: float
    seen: int
    seconds: float


class ResumableRun:
    """An epoch/step loop with checkpoints, stop signals and exact resume (see the module docstring).

    A subclass sets `kind`, `config`, `dist` and `train_set` and implements `step`, `end_of_epoch`,
    `state_dict` and `load_state_dict`; `run(run_dir, resume)` drives it.
    """

    kind = "run"  # written into every checkpoint: a search's never resumes a training, and back
    histories: tuple[str, ...] = ()  # per-epoch JSON-lines logs besides metrics (e.g. "arch_history")
    config: RunConfig
    dist: Dist
    train_set: Dataset
    steps_per_epoch: int

    # -- what a subclass provides ---------------------------------------------------------------------

    def step(self, images: torch.Tensor, targets: torch.Tensor, epoch: int, step: int, totals: Totals) -> None:
        """One training step on this rank's batch; adds to `totals`."""
        raise NotImplementedError

    def end_of_epoch(self, epoch: int, totals: Totals) -> dict[str, dict[str, Any]]:
        """The epoch's log rows: {"metrics": row, **{history: row}} (rows carry 1-based "epoch")."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds besides position, totals and RNG (weights, optimizers, config...)."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any], where: Path) -> None:
        """Restore `state_dict()`'s entries, refusing (UserError) a checkpoint of another run."""
        raise NotImplementedError

    def begin(self, fresh: bool) -> None:
        """Called once before the loop; `fresh` when nothing was restored (e.g. write run files)."""

    def begin_epoch(self, epoch: int) -> None:
        """Called before the first step of every epoch (also a resumed one)."""

    def describe(self, epoch: int) -> str:
        return f"epoch {epoch + 1}/{self.config.epochs}"

    def postfix(self, totals: Totals) -> dict[str, str]:
        """What the progress bar shows after the counts."""
        return {"loss": f"{totals.loss / max(1, totals.seen):.3f}"}

    def summary(self, rows: dict[str, dict[str, Any]]) -> str:
        """The log line of a finished epoch."""
        return format_row(rows["metrics"])

    # -- the engine ------------------------------------------------------------------------------------

    def run(self, run_dir: str | Path, resume: bool = False, restored: Callable[[], None] | None = None) -> int:
        """Run every epoch left into `run_dir` (continuing its checkpoint when `resume`, then calling
        `restored`); returns the number of epochs this call ran. Stops with `Interrupted` on Ctrl-C/SIGTERM
        after saving."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        if resume and self.dist.main:
            remove_stale_temps(self.checkpoint_path)
        start, step, totals = (0, 0, None)
        if resume and self.checkpoint_path.exists():
            start, step, totals = self._restore()
        if resume and restored is not None and self.dist.main:
            restored()  # e.g. record the settings this resume changed, now that it can go on
        fresh = (start, step) == (0, 0)
        if fresh:
            torch.manual_seed(self.config.seed + self.dist.rank)  # each process its own augmentations
        self.begin(fresh)
        main = self.dist.main
        logs = run_logs(self.run_dir, start, self.config.tensorboard) if main else []
        histories = {name: MetricsLog(self.run_dir, start, name, csv=False) for name in self.histories} if main else {}
        self.session_started = time.perf_counter()
        with stop_signals() as stop:  # Ctrl-C: a checkpoint after the current step, then Interrupted
            for epoch in range(start, self.config.epochs):
                self.begin_epoch(epoch)
                totals = self.run_epoch(epoch, step, totals, stop)
                rows = self.end_of_epoch(epoch, totals)
                for metrics in logs:
                    metrics.append(rows["metrics"])
                for name, history in histories.items():
                    history.append(rows[name])
                saved = self.save(epoch + 1)
                step, totals = 0, None
                log.info(self.summary(rows))
                if epoch + 1 < self.config.epochs:
                    stop.check(lambda saved=saved: saved,  # the checkpoint just written is the one to keep
                               self.dist.any)
        for metrics in logs:
            metrics.close()
        return max(0, self.config.epochs - start)

    @property
    def session_seconds(self) -> float:
        """Wall time of this `run` call so far."""
        return time.perf_counter() - self.session_started

    def run_epoch(self, epoch: int, start: int = 0, totals: Totals | None = None,
                  stop: StopSignals | None = None) -> Totals:
        """Steps from batch `start` to the end of epoch `epoch`, continuing `totals`; on a stop signal,
        a checkpoint after the current step and `Interrupted`."""
        cfg, stop = self.config, stop or StopSignals()
        totals = totals or Totals()
        loader = self.dist.epoch_loader(self.train_set, cfg.batch_size, cfg.seed, epoch, start, cfg.num_workers)
        global_batch = cfg.batch_size * self.dist.world
        started = time.perf_counter() - totals.seconds  # the steps before a resume count too
        bar = tqdm(total=self.steps_per_epoch * global_batch, initial=start * global_batch, unit="img",
                   unit_scale=True, desc=self.describe(epoch), leave=False,
                   disable=not (cfg.progress and self.dist.main))
        with bar:
            for step, (images, targets) in enumerate(loader, start=start):
                self.step(images, targets, epoch, step, totals)
                totals.seconds = time.perf_counter() - started
                bar.update(len(targets) * self.dist.world)
                bar.set_postfix(self.postfix(totals))
                stop.check(lambda step=step: self.save(epoch, step + 1, totals), self.dist.any)
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < self.steps_per_epoch:
                    self.save(epoch, step + 1, totals)
        totals.seconds = time.perf_counter() - started
        return totals

    def epoch_sums(self, totals: Totals) -> EpochSums:
        """The epoch's loss, top-1 and image count over every rank (the time is this rank's)."""
        loss, correct, seen = self.dist.sum([totals.loss, totals.correct, totals.seen])
        return EpochSums(loss / max(1, seen), correct / max(1, seen), int(seen), totals.seconds)

    def check_finite(self, loss: torch.Tensor, what: str, where: str = "") -> None:
        """Stop every rank, before the step changes anything, when `loss` is not finite on any of them."""
        if self.dist.any(not torch.isfinite(loss)):
            raise NonFiniteLossError(f"{what} became {loss.item()}{where}; lower --lr "
                                     f"(the last checkpoint, {self.checkpoint_path}, is intact)")

    def save(self, epoch: int, step: int = 0, totals: Totals | None = None) -> str:
        """Everything a resume needs to continue epoch `epoch` (0-based) at batch `step`; says what it saved."""
        rng = rng_states(self.dist)  # every rank's, collected on all
        gathered = self.dist.gather(asdict(totals) if totals is not None else None)
        saved = f"saved {self.checkpoint_path} at epoch {epoch + 1}, step {step}"
        if self.dist.main:
            state = {"kind": self.kind, **self.state_dict(), "epoch": epoch, "step": step, "totals": gathered,
                     "rng": rng}
            save_checkpoint(state, self.checkpoint_path)
        return saved

    def _restore(self) -> tuple[int, int, Totals | None]:
        state = load_checkpoint(self.checkpoint_path)
        if state.get("kind") != self.kind:
            found = f"a {state['kind']} run's" if isinstance(state.get("kind"), str) else "not a"
            raise UserError(f"{self.checkpoint_path}: {found} checkpoint, not a {self.kind} run's; "
                            f"resume it with `proxyless {state.get('kind', self.kind)} --resume` or start a new run")
        self.load_state_dict(state, self.checkpoint_path)
        restore_rng(self.dist, state["rng"], str(self.checkpoint_path))
        epoch, step = int(state["epoch"]), int(state["step"])
        log.info("resuming %s at epoch %d, step %d", self.run_dir, epoch + 1, step)
        totals = state["totals"]
        mine = totals[self.dist.rank] if isinstance(totals, list) else totals
        return epoch, step, Totals.from_dict(mine) if mine else None


def format_row(row: dict[str, Any]) -> str:
    """'epoch 3  train_loss 1.234  ...' for a log line."""
    parts = [f"epoch {row['epoch']}"]
    for key, value in row.items():
        if key != "epoch":
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)
