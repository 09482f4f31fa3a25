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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset
from tqdm import tqdm

from proxyless.arch import ArchError, save_arch
from proxyless.arch_kinds import AnyArch
from proxyless.data import Splits, load_splits, make_loader
from proxyless.errors import UserError, check_field_types, check_positive_flags
from proxyless.infra.atomic import atomic_write_text
from proxyless.infra.checkpoint import check_arch, load_state, save_weights
from proxyless.infra.device import resolve_device
from proxyless.infra.distributed import Dist
from proxyless.infra.engine import ResumableRun, Totals
from proxyless.infra.metrics import topk_correct
from proxyless.infra.settings import open_run
from proxyless.net import build_net
from proxyless.optim import load_schedule, make_scheduler, make_sgd
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


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    arch: AnyArch  # as trained (a zoo net adapted to the data)
    test_top1: float
    test_top5: float
    test_loss: float
    record: dict[str, Any]  # result.json: the above, params, MACs, time

    @property
    def weights(self) -> Path:
        return self.run_dir / "weights.safetensors"


def train_net(arch: AnyArch, data: Splits | str = "sample", config: TrainConfig | None = None, *,
              out: str | Path | None = None, resume: bool = False, overwrite: bool = False, adapt: bool = False,
              dist: Dist | None = None, command: dict[str, Any] | None = None) -> TrainResult:
    """Train `arch` from scratch on `data` (a source for `load_splits`, or Splits) into the run directory `out`
    (default runs/train-<name>); `resume=True` continues it, its saved settings winning (see
    `proxyless.infra.settings`). `adapt`: fit the arch to the data's image size and classes (zoo nets);
    otherwise they must match. `command`: the CLI flags, saved with the settings."""
    config = config or TrainConfig()
    if isinstance(data, str):
        data = load_splits(data, arch.input_size, seed=config.seed, progress=config.progress)
    arch = fit_to_data(arch, data, adapt)
    dist = dist or Dist(device=resolve_device(config.device))
    settings = {"train": asdict(config), "data": data.source, **({"command": command} if command else {})}
    name = f"train-{arch.label}"
    torch.manual_seed(config.seed)  # the initial weights depend on the seed too (the same on every rank)
    trainer = Trainer(arch, build_net(arch), data, config, dist)
    # only now, with every setting checked, the run directory (a refused training leaves no trace)
    opened = dist.on_main(lambda: open_run(out, name, settings, resume, overwrite))
    record = trainer.run(opened.path, resume, opened.record_resume)
    return TrainResult(opened.path, arch, record["test_top1"], record["test_top5"], record["test_loss"], record)


def fit_to_data(arch: AnyArch, data: Splits, adapt: bool) -> AnyArch:
    """`arch` for the data's image size and classes: adapted when `adapt`, else refused if they differ."""
    if (arch.input_size, arch.num_classes) == (data.image_size, len(data.classes)):
        return arch
    if adapt:
        return arch.with_task(data.image_size, len(data.classes))
    raise ArchError(
        f"architecture {arch.name or ''} expects {arch.input_size} px images and {arch.num_classes} classes, "
        f"but the data has {data.image_size} px and {len(data.classes)} classes; create a matching one "
        f"(e.g. `proxyless zoo build NAME --image-size {data.image_size} --num-classes {len(data.classes)} "
        "--out arch.json`)"
    )


class Trainer(ResumableRun):
    """Trains `net` on `splits` on the resumable-run engine; construction validates and touches no file.

    `run(run_dir)` trains into `run_dir`; `run(run_dir, resume=True)` continues from its `checkpoint.pt`.
    """

    kind = "train"

    def __init__(self, arch: AnyArch, net: nn.Module, splits: Splits, config: TrainConfig,
                 dist: Dist | None = None) -> None:
        self.arch, self.splits, self.config, self.train_set = arch, splits, config, splits.train
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
        self.last_test: dict[str, float] | None = None  # the last epoch's test metrics

    def run(self, run_dir: str | Path, resume: bool = False,
            restored: Callable[[], None] | None = None) -> dict[str, Any]:
        """Train every epoch left; returns the result record (also written to result.json)."""
        super().run(run_dir, resume, restored)
        # the last epoch's test metrics are the final weights'; evaluate only when no epoch was left to run
        return self._finish(self.session_seconds, self.last_test or self.evaluate())

    def begin(self, fresh: bool) -> None:
        log.info("training %s on %s (%d process(es) of %d thread(s)) -> %s", self.arch.label,
                 self.splits.source, self.dist.world, torch.get_num_threads(), self.run_dir)
        if fresh and self.dist.main:
            self._write_run_files()

    def begin_epoch(self, epoch: int) -> None:
        self.net.train()

    def postfix(self, totals: Totals) -> dict[str, str]:
        return {**super().postfix(totals), "lr": f"{self.scheduler.get_last_lr()[0]:.4f}"}

    def step(self, images: torch.Tensor, targets: torch.Tensor, epoch: int, step: int, totals: Totals) -> None:
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        targets = targets.to(self.device, non_blocking=True)
        with self._autocast():
            logits = self.model(images)  # (B, classes)
            loss = self.criterion(logits, targets)
        self.check_finite(loss, "loss", f" at epoch {epoch + 1}, step {step}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        totals.add(loss.item(), int((logits.argmax(1) == targets).sum()), len(targets))

    def end_of_epoch(self, epoch: int, totals: Totals) -> dict[str, dict[str, Any]]:
        sums = self.epoch_sums(totals)
        self.last_test = self.evaluate()
        row = {
            "epoch": epoch + 1,
            "train_loss": sums.loss,
            "train_top1": sums.top1,
            "lr": self.scheduler.get_last_lr()[0],
            "images_per_s": sums.seen / sums.seconds,
            "epoch_seconds": sums.seconds,
            **{f"test_{k}": v for k, v in self.last_test.items()},
        }
        return {"metrics": row}

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
        save_arch(self.arch, self.run_dir / "arch.json")
        if not (self.run_dir / "config.json").is_file():  # `train()` wrote it already, with the command line
            config = {"train": asdict(self.config), "data": self.splits.source, "torch": torch.__version__}
            atomic_write_text(self.run_dir / "config.json", json.dumps(config, indent=2) + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "config": asdict(self.config),
        }

    def load_state_dict(self, state: dict[str, Any], where: Path) -> None:
        check_arch(state, self.arch, where)
        load_state(self.net, state["model"], str(where))
        self.optimizer.load_state_dict(state["optimizer"])
        load_schedule(self.scheduler, state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])

    def _finish(self, seconds: float, metrics: dict[str, float]) -> dict[str, Any]:
        test = {f"test_{k}": v for k, v in metrics.items()}
        if not self.dist.main:
            return {"arch": self.arch.name, **test}
        save_weights(self.net, self.run_dir / "weights.safetensors")
        result = {
            "arch": self.arch.name,
            **test,
            **vars(profile(self.net, self.arch.input_size)),
            "train_seconds_this_session": seconds,
            "processes": self.dist.world,
        }
        atomic_write_text(self.run_dir / "result.json", json.dumps(result, indent=2) + "\n")
        return result


def evaluate_net(arch: AnyArch, weights: str | Path, data: Splits | str = "sample", batch_size: int = 256,
                 device: str = "cpu") -> dict[str, float]:
    """Test loss, top-1 and top-5 of `arch` with trained `weights` (weights.safetensors or a training
    checkpoint.pt) on `data`'s test split, with the net's params and MACs."""
    from proxyless.export import load_trained  # reads both weight files safely

    if isinstance(data, str):
        data = load_splits(data, arch.input_size, augment=False, progress=False)
    if len(data.classes) != arch.num_classes:
        raise UserError(f"the network has {arch.num_classes} classes but {data.source} has {len(data.classes)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {batch_size!r}")
    where = resolve_device(device)
    net = load_trained(arch, weights).to(where)
    result = evaluate(net, data.test, batch_size, where, progress=False)
    return {**result, **vars(profile(net, arch.input_size))}


def evaluate(net: nn.Module, dataset: torch.utils.data.Dataset, batch_size: int, device: torch.device,
             memory_format: torch.memory_format = torch.contiguous_format, progress: bool = True) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy over `dataset` in eval mode."""
    sums = evaluate_sums(net, dataset, batch_size, device, memory_format, progress)
    return {"loss": sums["loss"] / sums["seen"], "top1": sums["top1"] / sums["seen"],
            "top5": sums["top5"] / sums["seen"]}


@torch.no_grad()
def evaluate_sums(net: nn.Module, dataset: torch.utils.data.Dataset, batch_size: int, device: torch.device,
                  memory_format: torch.memory_format = torch.contiguous_format,
                  progress: bool = True) -> dict[str, float]:
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
