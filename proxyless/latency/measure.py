"""Measuring a latency table on this machine (backend `torch-cpu`: PyTorch eager, inference, channels-last).

`build_lut` times every key a space needs in *rounds*: each round visits every unfinished key once, in
a shuffled order, and records the median of a few calls. Interleaving spreads the noise of a shared
machine over all keys alike. A key is done once it has `min_rounds` samples and the standard error of
its mean is below `rel_error` of the mean (or after `max_rounds`). The table is saved atomically after
every round with running statistics, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import platform
import random
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from proxyless.latency.keys import Context, OpKey, all_keys
from proxyless.latency.lut import LatencyTable, LatencyTableError, Stat, load_lut, save_lut
from proxyless.layers import ConvBNAct, InvertedResidual, Residual
from proxyless.space import SearchSpace

BACKENDS = ("torch-cpu",)


@dataclass(frozen=True)
class MeasureConfig:
    batch: int = 1
    threads: int = 0  # 0: torch's default
    calls_per_sample: int = 5
    warmup_calls: int = 3
    min_rounds: int = 5
    max_rounds: int = 30
    rel_error: float = 0.02
    seed: int = 0


def module_for_key(key: OpKey) -> nn.Module:
    """The module whose latency `key` stands for, in eval mode."""
    if key.kind == "stem":
        module: nn.Module = ConvBNAct(key.in_channels, key.out_channels, key.kernel, key.stride)
    elif key.kind == "mbconv":
        body = InvertedResidual(key.in_channels, key.out_channels, key.kernel, key.stride, key.expand)
        module = Residual(body) if key.shortcut else body
    elif key.kind == "feature_mix":
        module = ConvBNAct(key.in_channels, key.out_channels, 1)
    else:
        module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(key.in_channels, key.out_channels))
    return module.eval()


def make_timer(key: OpKey, config: MeasureConfig) -> Callable[[], float]:
    """A function returning the median time (ms) of `calls_per_sample` forward calls of `key`'s module."""
    module = module_for_key(key).to(memory_format=torch.channels_last)
    x = torch.randn(key.batch, key.in_channels, key.input_size, key.input_size)
    x = x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def sample() -> float:
        times = []
        for _ in range(config.calls_per_sample):
            start = time.perf_counter()
            module(x)
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)

    with torch.inference_mode():
        for _ in range(config.warmup_calls):
            module(x)
    return sample


def merge(stat: Stat | None, value: float) -> Stat:
    """Running mean and (sample) variance with one more value (Welford)."""
    if stat is None:
        return Stat(value, 0.0, 1)
    count = stat.count + 1
    delta = value - stat.mean
    mean = stat.mean + delta / count
    m2 = stat.var * (stat.count - 1) + delta * (value - mean)
    return Stat(mean, m2 / (count - 1), count)


def is_done(stat: Stat | None, config: MeasureConfig) -> bool:
    if stat is None or stat.count < config.min_rounds:
        return False
    standard_error = (stat.var / stat.count) ** 0.5
    return stat.count >= config.max_rounds or standard_error <= config.rel_error * stat.mean


def header_for(backend: str, config: MeasureConfig, space: SearchSpace) -> dict:
    return {
        "backend": backend, "device": cpu_name(), "threads": torch.get_num_threads(), "batch": config.batch,
        "dtype": "float32", "space": space.name, "unit": "ms",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": f"median of {config.calls_per_sample} calls per round, rounds interleaved over keys; "
                  f"mean of round medians until its standard error < {config.rel_error:.0%}",
    }


def build_lut(space: SearchSpace, out: str | Path, backend: str = "torch-cpu", config: MeasureConfig = MeasureConfig(),
              resume: bool = True, progress: bool = True) -> LatencyTable:
    """Measure every key `space` needs into `out` (resuming a partial table there when `resume`)."""
    if backend not in BACKENDS:
        raise LatencyTableError(f"unknown latency backend {backend!r}; available: {', '.join(BACKENDS)}")
    if config.threads:
        torch.set_num_threads(config.threads)
    context = Context(config.batch, "float32", backend)
    table = _existing(out, context) if resume else None
    table = table or LatencyTable(header_for(backend, config, space))
    keys = all_keys(space, context)
    rng = random.Random(config.seed)
    timers: dict[OpKey, Callable[[], float]] = {}
    bar = tqdm(total=len(keys), desc=f"lut {backend}", unit="op", disable=not progress)
    with bar:
        bar.update(sum(is_done(table.entries.get(k), config) for k in keys))
        while todo := [k for k in keys if not is_done(table.entries.get(k), config)]:
            rng.shuffle(todo)
            for key in todo:  # 1. one sample of every unfinished key, in a shuffled order
                timer = timers.get(key) or timers.setdefault(key, make_timer(key, config))
                table.entries[key] = merge(table.entries.get(key), timer())
            bar.update(sum(is_done(table.entries[k], config) for k in todo))
            save_lut(table, out)  # 2. the round is on disk: a killed build resumes from here
    return table


def _existing(out: str | Path, context: Context) -> LatencyTable | None:
    if not Path(out).exists():
        return None
    table = load_lut(out)
    if table.context != context:
        raise LatencyTableError(
            f"{out} holds a table for {table.context}; it cannot be resumed as {context}; choose another --out"
        )
    return table


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
