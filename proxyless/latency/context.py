"""A latency table timed in context: each op timed in place, inside whole networks.

An op timed alone runs on an input it read a moment ago, with its weights in cache, and a network is
more than its ops called one by one: measured here (`proxyless-imagenet`, torch-cpu, batch 1, 2 threads)
whole networks took 1.06-1.75x the sum of their ops timed alone (varying from run to run), but
0.95-1.02x the sum of the same ops timed inside networks. So this table is built from networks:

    table = build_context_lut(space, "lut.json", "torch-cpu", MeasureConfig(batch=1, threads=2))

1. A *covering* set of networks (`covering_archs`): in each of `cycles` groups, every candidate of
   every layer is in at least one network, its neighbours drawn at random.
2. Rounds: each network once per round, in a shuffled order; one untimed forward pass, then
   `calls_per_sample` timed passes; a part's median over the passes is a sample of its key. The same key
   in several layers or networks gives several samples. In PyTorch a clock is read between blocks; in
   onnxruntime the whole network runs in one session with profiling on, and each kernel of the
   optimised graph is attributed to the block the exporter's name scopes put its nodes in.
3. Each network's samples are divided by a reference network's recent time, sampled just before them
   (`measure.Reference`: the median of its last five samples), and scaled at the reference's median
   over the first round, kept in the header, so samples taken at different speeds of a shared machine,
   or in a resumed build, add up on one scale.
4. A key's entry is the mean of its samples: the op's cost averaged over the neighbours a search gives
   it. A key is done as in `build_lut` (its samples counted like rounds); the table is saved after every
   round and on Ctrl-C or SIGTERM, and a killed build resumes.

torch-cpu and onnxruntime, MBConv spaces: torch-cuda runs kernels asynchronously (a host clock between
blocks would time the launches) and tree cells have no block per key; their tables time each op alone.
"""

from __future__ import annotations

import ast
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from proxyless.arch import Arch
from proxyless.arch_kinds import AnySpace, arch_of_indices
from proxyless.errors import UserError
from proxyless.infra.signals import stop_signals
from proxyless.latency.keys import Context, OpKey, all_keys, fixed_keys, op_key
from proxyless.latency.lut import LatencyTable, save_lut
from proxyless.latency.measure import (
    MeasureConfig,
    Reference,
    existing_table,
    header_for,
    is_done,
    merge,
    reference_arch,
)
from proxyless.latency.runners import export_onnx, onnxruntime_session, steady_memory, torch_threads
from proxyless.net import ProxylessNet, build_net
from proxyless.space import SearchSpace

__all__ = ["CONTEXT_BACKENDS", "METHODS", "build_context_lut", "covering_archs", "net_parts", "resolve_method"]

CONTEXT_BACKENDS = ("torch-cpu", "onnxruntime")
CYCLES = 3  # groups of the covering set: each candidate of each layer meets 3 sets of neighbours a round

METHODS = ("auto", "context", "isolated")  # auto: in context where it can be, else each op alone
Part = tuple[Callable[[torch.Tensor], torch.Tensor], OpKey | None]
PartTimer = Callable[[int], list[tuple[OpKey, float]]]  # calls -> (key, median ms) of each priced part


def check_context(space: AnySpace, backend: str) -> None:
    """Raise a one-line error naming the fix unless `space` on `backend` can be timed in context."""
    if backend not in CONTEXT_BACKENDS:
        raise UserError(f"ops are timed in context only on {', '.join(CONTEXT_BACKENDS)}, not {backend}; build this "
                        "table with --method isolated")
    if not isinstance(space, SearchSpace):
        raise UserError(f"{space.name} is a tree-cell space, whose ops are timed alone: build its table with "
                        "--method isolated")


def resolve_method(space: AnySpace, backend: str, method: str = "auto") -> str:
    """"context" or "isolated": what `method` means for `space` on `backend` (raising if it cannot be)."""
    if method not in METHODS:
        raise UserError(f"unknown table method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "auto":
        return "context" if backend in CONTEXT_BACKENDS and isinstance(space, SearchSpace) else "isolated"
    if method == "context":
        check_context(space, backend)
    return method


def covering_archs(space: SearchSpace, cycles: int = CYCLES, seed: int = 0) -> list[Arch]:
    """`cycles` groups of networks, each group holding every candidate of every layer at least once (a
    layer with fewer candidates than the widest repeats random ones), combined across layers at random."""
    rng = random.Random(seed)
    width = max(len(slot.candidates) for slot in space.layers())
    archs: list[Arch] = []
    for _ in range(cycles):
        columns = []
        for slot in space.layers():
            picks = list(range(len(slot.candidates))) + [rng.randrange(len(slot.candidates))
                                                          for _ in range(width - len(slot.candidates))]
            rng.shuffle(picks)
            columns.append(picks)
        archs += [arch_of_indices(space, [column[i] for column in columns], name=f"context-{len(archs) + i}")
                  for i in range(width)]
    return archs


def part_keys(arch: Arch, context: Context) -> list[OpKey | None]:
    """The key of each timed part of `arch`'s network, in order: stem, first block, each layer, feature
    mix, head (None: the part costs nothing, or the space has no first block)."""
    space = arch.space
    stem, *rest = fixed_keys(space, context)
    first = rest.pop(0) if space.has_first_block else None
    feature_mix, classifier = rest
    blocks = [op_key(slot, op, context) for slot, op in zip(space.layers(), arch.ops)]
    return [stem, first, *blocks, feature_mix, classifier]


def net_parts(net: ProxylessNet, context: Context) -> list[Part]:
    """`net`'s forward pass as the parts a table prices, each with its key (None: costs nothing)."""

    def head(x: torch.Tensor) -> torch.Tensor:
        return net.classifier(net.pool(x).flatten(1))  # dropout: the identity in eval mode

    modules = [net.stem, net.first_block, *net.blocks, net.feature_mix, head]
    return list(zip(modules, part_keys(net.arch, context)))


def time_parts(parts: list[Part], x: torch.Tensor, calls: int) -> list[float]:
    """Median ms of each part over `calls` forward passes (after one untimed pass)."""
    times: list[list[float]] = [[] for _ in parts]
    for timed in [False] + [True] * calls:
        h = x
        for i, (part, _) in enumerate(parts):
            start = time.perf_counter()
            h = part(h)
            if timed:
                times[i].append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def torch_part_timer(arch: Arch, context: Context, config: MeasureConfig) -> PartTimer:
    """(key, ms) samples of `arch`'s parts, timed in PyTorch on the CPU (channels-last, inference mode)."""
    net = build_net(arch).eval().to(memory_format=torch.channels_last)
    parts = net_parts(net, context)
    x = torch.randn(config.batch, 3, arch.input_size, arch.input_size).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def sample(calls: int) -> list[tuple[OpKey, float]]:
        return [(key, ms) for (_, key), ms in zip(parts, time_parts(parts, x, calls)) if key is not None]

    with torch.inference_mode():
        for _ in range(config.warmup_calls):
            net(x)
    return sample


def onnx_part_timer(arch: Arch, context: Context, config: MeasureConfig, scratch: Path) -> PartTimer:
    """(key, ms) samples of `arch`'s parts in onnxruntime: the whole network runs in one session with
    profiling on, and each kernel's time goes to the part that the exporter's name scopes say it came
    from (a layout reorder the optimiser inserted goes to the part whose kernel ran just before it)."""
    shape = (config.batch, 3, arch.input_size, arch.input_size)
    model = export_onnx(build_net(arch).eval(), torch.randn(shape))
    keys = part_keys(arch, context)
    owners = name_owners(model, len(arch.ops))
    feed = torch.randn(shape).numpy()

    def sample(calls: int) -> list[tuple[OpKey, float]]:
        session = onnxruntime_session(model, config.threads, profile_prefix=str(scratch / "profile"))
        name = session.get_inputs()[0].name
        for _ in range(config.warmup_calls + 1 + calls):  # as a timer: warm-up, one untimed call, then timed
            session.run(None, {name: feed})
        path = Path(session.end_profiling())
        try:
            events = json.loads(path.read_text())
        finally:
            path.unlink(missing_ok=True)
        runs = kernel_times_by_run(events, owners, len(keys))[-calls:]
        return [(key, statistics.median(run[i] for run in runs)) for i, key in enumerate(keys) if key is not None]

    return sample


def part_of_scope(scopes: list[str], layers: int) -> int:
    """Which timed part an exported node belongs to, from its module name scopes ('', 'blocks', 'blocks.3', ...)."""
    top = scopes[1] if len(scopes) > 1 else ""
    if top == "stem":
        return 0
    if top == "first_block":
        return 1
    if top == "blocks" and len(scopes) > 2:
        return 2 + int(scopes[2].split(".")[1])
    if top == "feature_mix":
        return 2 + layers
    return 3 + layers  # pool, flatten, dropout, classifier


def name_owners(model: bytes, layers: int) -> dict[str, int]:
    """The part of every node name and output name of an exported network (see `part_of_scope`)."""
    import onnx

    owners: dict[str, int] = {}
    for node in onnx.load_from_string(model).graph.node:
        meta = {prop.key: prop.value for prop in node.metadata_props}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "['']"))
        for name in (node.name, *node.output):
            owners[name] = part_of_scope(scopes, layers)
    if set(owners.values()) <= {3 + layers}:  # no name scopes: every kernel would land in the head
        raise UserError("this torch.onnx exporter records no module name scopes, so kernels cannot be traced "
                        "to their blocks; build the table with --method isolated")
    return owners


def owner_of(kernel: str, owners: dict[str, int]) -> int | None:
    """The part of an optimised graph's kernel: its own name, or the longest original name it extends
    (the optimiser names a fused node after an output it computes: 'hardtanh_3' -> 'hardtanh_3_nchwc')."""
    if kernel in owners:
        return owners[kernel]
    matches = [name for name in owners if kernel.startswith(name + "_")]
    return owners[max(matches, key=len)] if matches else None


def kernel_times_by_run(events: list[dict], owners: dict[str, int], parts: int) -> list[list[float]]:
    """For each `model_run` of an onnxruntime profile, the ms its kernels spent in each part."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    kernels = sorted((e["ts"], e["name"].removesuffix("_kernel_time"), e["dur"]) for e in events
                     if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"))
    times = [[0.0] * parts for _ in runs]
    run, last = 0, 0
    for ts, kernel, dur in kernels:
        while run < len(runs) and ts > runs[run][1]:
            run, last = run + 1, 0
        if run == len(runs):
            break
        part = owner_of(kernel, owners)
        last = last if part is None else part
        times[run][last] += dur / 1e3
    return times


def build_context_lut(space: SearchSpace, out: str | Path, backend: str = "torch-cpu",
                      config: MeasureConfig | None = None, resume: bool = True, progress: bool = True,
                      cycles: int = CYCLES) -> LatencyTable:
    """Time every key `space` needs inside the networks of `covering_archs` into `out`."""
    config = config or MeasureConfig()
    check_context(space, backend)
    context = Context(config.batch, "float32", backend)
    table = existing_table(out, context, "context") if resume else None
    clock = "a clock read between blocks" if backend == "torch-cpu" else "onnxruntime's kernel profile"
    table = table or LatencyTable({**header_for(backend, config, space), "timing": "context", "method": (
        f"each op timed in place inside {cycles} covering sets of networks ({clock}): the median of "
        f"{config.calls_per_sample} passes, over rounds; every network's sample divided by a reference "
        f"network's recent time (the median of its last 5 samples, one taken just before); mean of an op's "
        f"samples until its standard error < {config.rel_error:.0%}")})
    keys = all_keys(space, context)
    reference = Reference(reference_arch(space), backend, config)
    pending: list[tuple[float, list[tuple[OpKey, float]]]] = []  # (reference ms, samples) not yet merged

    def flush() -> None:
        """Merge the pending samples, on the table's reference scale (set from the first round's)."""
        if not pending:
            return
        header = table.header.setdefault("reference", {"arch": list(reference.arch.op_strings())})
        header.setdefault("ms", statistics.median(ref for ref, _ in pending))
        for ref, samples in pending:
            for key, ms in samples:
                table.entries[key] = merge(table.entries.get(key), ms * header["ms"] / ref)
        pending.clear()

    def save_progress() -> str:
        flush()
        save_lut(table, out)
        done = sum(is_done(table.entries.get(key), config) for key in keys)
        return f"saved {out} with {done} of {len(keys)} ops measured to the end"

    rng = random.Random(config.seed)
    with tqdm(total=len(keys), desc=f"lut {backend} in context", unit="op", disable=not progress) as bar, \
            stop_signals() as stop, steady_memory(), torch_threads(config.threads), \
            tempfile.TemporaryDirectory() as scratch:
        timers = [torch_part_timer(arch, context, config) if backend == "torch-cpu"
                  else onnx_part_timer(arch, context, config, Path(scratch))
                  for arch in covering_archs(space, cycles, config.seed)]
        rounds = 0
        while not all(is_done(table.entries.get(key), config) for key in keys) and rounds < config.max_rounds:
            order = list(range(len(timers)))
            rng.shuffle(order)
            for i in order:
                ref = reference.sample(config.calls_per_sample)
                pending.append((ref, timers[i](config.calls_per_sample)))
                if "ms" in table.header.get("reference", {}):
                    flush()  # after the first round, every network's samples go in at once
                stop.check(save_progress)
            rounds += 1
            save_progress()
            bar.update(sum(is_done(table.entries.get(key), config) for key in keys) - bar.n)
    save_lut(table, out)
    return table
