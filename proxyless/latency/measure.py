"""Measuring latency on this machine: a table of every op of a space, or whole networks.

Both time their items in *rounds*: each round visits every unfinished item once, in a shuffled order,
and records the median of a few calls (see `runners` for the backends). Interleaving spreads the noise
of a shared machine over all items alike. An item is done once it has `min_rounds` samples and the
standard error of its mean is below `rel_error` of the mean (or after `max_rounds`). `build_lut` saves
the table atomically after every round with running statistics (and on Ctrl-C or SIGTERM, after the
current sample), so an interrupted or killed build resumes where it stopped. Both measure inside
`runners.steady_memory()`, which sets glibc's default allocator thresholds again when they return.

Whole networks are timed *paired* (`MeasureConfig.paired`, on by default): each sample is divided by the
recent time of a fixed reference network, sampled just before it, and the ratios are turned back into
milliseconds at the reference's median (`Reference`). This machine's speed drifts: over rounds of 120
networks at batch 1, whole rounds ran from 0.83x to 1.26x the mean (a per-round spread of 20%), while
the ratio to a reference timed beside each sample spread 3%. Tables built in context (`context`) are
paired the same way; ops timed alone are not (an op takes well under a millisecond, the reference tens).
`build_lut` times in context where it can (`method="auto"`) and hands that to `latency.context`.
"""

from __future__ import annotations

import platform
import random
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from proxyless.arch import Arch
from proxyless.arch_kinds import AnyArch, AnySpace, arch_of_indices
from proxyless.infra.atomic import remove_stale_temps
from proxyless.infra.extras import require
from proxyless.infra.signals import stop_signals
from proxyless.latency.keys import Context, OpKey, all_keys
from proxyless.latency.lut import LatencyTable, LatencyTableError, Stat, load_lut, save_lut
from proxyless.latency.runners import (
    BACKENDS,
    ORT_SESSION_CONFIG,
    Timer,
    check_backend,
    make_timer,
    steady_memory,
    torch_threads,
)
from proxyless.layers import ConvBNAct, InvertedResidual, Residual
from proxyless.net import build_net
from proxyless.space import SearchSpace

__all__ = ["BACKENDS", "MeasureConfig", "Reference", "build_lut", "measure_archs", "module_for_key"]


@dataclass(frozen=True)
class MeasureConfig:
    batch: int = 1
    threads: int = 0  # 0: torch's default
    calls_per_sample: int = 5
    warmup_calls: int = 3
    min_rounds: int = 10  # a 224 px table needs only seconds; noisy op times blur the ranking of nets
    max_rounds: int = 30
    rel_error: float = 0.01
    seed: int = 0
    paired: bool = True  # whole networks and in-context tables: divide by a reference timed beside each sample


class Reference:
    """A reference network (`arch`), timed just before every sample of another item, so that the drift
    of a shared machine cancels out of the ratio.

        reference = Reference(reference_arch(space), "torch-cpu", config)
        sample = reference.pair(timer)   # sample(calls) -> the item's ms / the reference's recent ms
        reference.ms                     # the scale: the median of its samples when first read, then fixed

    The divisor is the median of the reference's last `window` samples, the one just taken included: it
    follows a drift over seconds without putting one sample's jitter into every ratio. One reference
    shared by several `measure_archs` calls (the nets a measured derive compares one after another)
    puts all of them on one scale: the ratios are turned back into milliseconds at `ms`, which is fixed
    the first time it is read (the end of the first call), so that a machine slower by the second call
    moves no net's milliseconds.
    """

    def __init__(self, arch: AnyArch, backend: str, config: MeasureConfig, window: int = 5) -> None:
        self.arch = arch
        self.backend, self.config, self.window = backend, config, window
        self.samples: list[float] = []
        self._ms: float | None = None
        self._timer: Timer | None = None  # built on first use: an ONNX export takes seconds

    def sample(self, calls: int) -> float:
        """Time the reference once more; returns its recent ms (the median of the last `window` samples)."""
        if self._timer is None:
            shape = (self.config.batch, 3, self.arch.input_size, self.arch.input_size)
            self._timer = make_timer(build_net(self.arch), shape, self.backend, self.config.threads,
                                     self.config.warmup_calls)
        self.samples.append(self._timer(calls))
        return statistics.median(self.samples[-self.window:])

    def pair(self, timer: Timer) -> Timer:
        """`timer`, each sample divided by the reference's recent ms, timed just before it."""

        def ratio(calls: int) -> float:
            reference = self.sample(calls)
            return timer(calls) / reference

        return ratio

    @property
    def ms(self) -> float:
        """The milliseconds every ratio is scaled back at: the median of the samples when first read."""
        if self._ms is None:
            self._ms = statistics.median(self.samples)
        return self._ms


def reference_arch(space: AnySpace) -> AnyArch:
    """The net every paired sample is divided by: the middle candidate of every layer (edge) of `space`."""
    return arch_of_indices(space, [len(slot.candidates) // 2 for slot in space.layers()], name="reference")


def scaled(stat: Stat, factor: float) -> Stat:
    return Stat(stat.mean * factor, stat.var * factor * factor, stat.count)


def module_for_key(key: OpKey) -> nn.Module:
    """The module whose latency `key` stands for, in eval mode (of a tree-cell table's key: `tree_keys`)."""
    if not isinstance(key, OpKey):
        from proxyless.latency.tree_keys import tree_module_for_key

        return tree_module_for_key(key)
    if key.kind == "stem":
        module: nn.Module = ConvBNAct(key.in_channels, key.out_channels, key.kernel, key.stride, act=key.act)
    elif key.kind == "mbconv":
        body = InvertedResidual(key.in_channels, key.out_channels, key.kernel, key.stride, key.expand, key.act)
        module = Residual(body) if key.shortcut else body
    elif key.kind == "skip":
        module = ConvBNAct(key.in_channels, key.out_channels, 1, key.stride, act=None)
    elif key.kind == "feature_mix":
        module = ConvBNAct(key.in_channels, key.out_channels, 1, act=key.act)
    else:
        module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(key.in_channels, key.out_channels))
    return module.eval()


def key_timer(key: OpKey, config: MeasureConfig) -> Timer:
    shape = (key.batch, key.in_channels, key.input_size, key.input_size)
    return make_timer(module_for_key(key), shape, key.backend, config.threads, config.warmup_calls)


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


def interleave(items: Sequence[Hashable], timer_for: Callable[[Hashable], Timer], stats: dict,
               config: MeasureConfig, bar: tqdm, after_round: Callable[[], None] = lambda: None,
               after_sample: Callable[[], None] = lambda: None) -> dict:
    """Time `items` in shuffled rounds until each is done; `stats` (item -> Stat) is updated in place."""
    rng = random.Random(config.seed)
    timers: dict = {}
    bar.update(sum(is_done(stats.get(item), config) for item in items))
    while todo := [item for item in items if not is_done(stats.get(item), config)]:
        rng.shuffle(todo)
        for item in todo:  # 1. one sample of every unfinished item, in a shuffled order
            timer = timers.get(item) or timers.setdefault(item, timer_for(item))
            stats[item] = merge(stats.get(item), timer(config.calls_per_sample))
            after_sample()  # e.g. stop on Ctrl-C
        bar.update(sum(is_done(stats[item], config) for item in todo))
        after_round()  # 2. e.g. save: a killed build resumes from here
    return stats


def header_for(backend: str, config: MeasureConfig, space: SearchSpace) -> dict:
    threads = config.threads or torch.get_num_threads()
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    if backend == "onnxruntime":
        versions["onnxruntime"] = require("onnxruntime", "onnx", "backend onnxruntime").__version__
    header = {
        "backend": backend, "device": device_name(backend), "threads": threads, "batch": config.batch,
        "dtype": "float32", "space": space.name, "unit": "ms", "versions": versions,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "method": f"median of {config.calls_per_sample} calls per round, rounds interleaved over keys; "
                  f"mean of round medians until its standard error < {config.rel_error:.0%}",
    }
    if backend == "onnxruntime":  # what a deployment must set to run at the table's speed
        header["session_config"] = dict(ORT_SESSION_CONFIG)
    return header


def build_lut(space: AnySpace, out: str | Path, backend: str = "torch-cpu", config: MeasureConfig = MeasureConfig(),
              resume: bool = True, progress: bool = True, method: str = "auto") -> LatencyTable:
    """Measure every key `space` needs into `out` (resuming a partial table there when `resume`): timed in
    context (`latency.context`: inside whole networks) or each op alone; `method` "auto" takes the first
    where `space` and `backend` allow it."""
    check_backend(backend)
    from proxyless.latency.context import build_context_lut, resolve_method  # it builds on this module

    if resolve_method(space, backend, method) == "context":
        return build_context_lut(space, out, backend, config, resume, progress)
    context = Context(config.batch, "float32", backend)
    table = existing_table(out, context, "isolated") if resume else None
    table = table or LatencyTable({**header_for(backend, config, space), "timing": "isolated"})
    keys = all_keys(space, context)

    def save_progress() -> str:
        save_lut(table, out)
        done = sum(is_done(table.entries.get(key), config) for key in keys)
        return f"saved {out} with {done} of {len(keys)} ops measured to the end"

    with tqdm(total=len(keys), desc=f"lut {backend}", unit="op", disable=not progress) as bar, \
            stop_signals() as stop, steady_memory(), torch_threads(config.threads):  # Ctrl-C: saved, then Interrupted
        interleave(keys, lambda key: key_timer(key, config), table.entries, config, bar,
                   after_round=save_progress, after_sample=lambda: stop.check(save_progress))
    save_lut(table, out)
    return table


def measure_archs(archs: Sequence[AnyArch], backend: str, config: MeasureConfig = MeasureConfig(),
                  progress: bool = True, reference: Reference | None = None) -> list[Stat]:
    """Whole-network latency (ms) of each of `archs`, timed in interleaved rounds like the table's ops
    (the statistics of the fastest three quarters of each net's rounds: see `trimmed_stat`); when
    `config.paired`, each round's time is divided by `reference`'s just before it (default: a new
    `Reference` of the first net's space, or for tree-cell nets the first net) and the ratios scaled back
    at the reference's median."""
    check_backend(backend)
    if config.paired and reference is None and archs:  # a tree-cell net has no space to take one from
        first = archs[0]
        reference = Reference(reference_arch(first.space) if isinstance(first, Arch) else first, backend, config)

    def timer_for(index: int) -> Timer:
        arch = archs[index]
        shape = (config.batch, 3, arch.input_size, arch.input_size)
        timer = make_timer(build_net(arch), shape, backend, config.threads, config.warmup_calls)
        return reference.pair(timer) if config.paired else timer

    rounds: dict[int, list[float]] = {i: [] for i in range(len(archs))}

    def recording_timer_for(index: int) -> Timer:
        timer = timer_for(index)

        def record(calls: int) -> float:
            rounds[index].append(timer(calls))
            return rounds[index][-1]

        return record

    with tqdm(total=len(archs), desc=f"measure {backend}", unit="net", disable=not progress) as bar, \
            steady_memory(), torch_threads(config.threads):  # the caller's threads back afterwards
        interleave(range(len(archs)), recording_timer_for, {}, config, bar)
    stats = [trimmed_stat(rounds[i]) for i in range(len(archs))]
    return [scaled(stat, reference.ms) for stat in stats] if config.paired and archs else stats


def trimmed_stat(values: Sequence[float], keep: float = 0.75) -> Stat:
    """Mean and variance of the fastest `keep` share of `values`.

    A whole network runs for tens of milliseconds per call, long enough for another process on a shared
    machine to land inside a round and inflate it; such rounds are slow, never fast, so the slowest
    quarter is dropped (on this 2-core machine the per-round spread was up to ±15%).
    """
    kept = sorted(values)[: max(1, round(len(values) * keep))]
    stat = None
    for value in kept:
        stat = merge(stat, value)
    return stat


def existing_table(out: str | Path, context: Context, timing: str) -> LatencyTable | None:
    """The partial table at `out` to resume, or None; raises if it was built for another context or way."""
    remove_stale_temps(out)
    if not Path(out).exists():
        return None
    table = load_lut(out)
    if table.context != context:
        raise LatencyTableError(
            f"{out} holds a table for {table.context}; it cannot be resumed as {context}; choose another --out"
        )
    if table.header.get("timing", "isolated") != timing:
        raise LatencyTableError(f"{out} holds a table timed {table.header.get('timing', 'isolated')}; it cannot be "
                                f"resumed {timing}; choose another --out or --method")
    return table


def device_name(backend: str) -> str:
    """The GPU's name for torch-cuda, else the CPU model."""
    return torch.cuda.get_device_name() if backend == "torch-cuda" else cpu_name()


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
