"""Activation memory and step time of the search steps as the number of candidates per layer grows.

Four steps on PROXYLESS_CIFAR (32 px, width 0.5), for 4, 7 and 13 candidates per shape-keeping layer
(the count includes `zero`; a layer that changes stride or width has one candidate fewer):

    single path   SGD step of the standalone net (`build_net`) of a sampled architecture
    weight        SGD step of the supernet on one sampled path per layer (as the search loop does)
    two-path arch `GradientStrategy(mode="two").step`: binarized gates, weights frozen
    full arch     `GradientStrategy(mode="full").step`: every candidate weighted by softmax(α)

Memory is measured in a fresh subprocess per (step, count), since peak RSS only ever grows:
bytes saved for backward (distinct storages packed by `saved_tensors_hooks`, parameters, buffers and
the input batch excluded) and peak RSS minus that of a baseline subprocess with the same setup and no
step. Step time is the median over rounds that interleave every step and count in this process.
Each repeat r draws one two-path sample at uniform p; the single-path and weight steps run its active
paths, so the four steps of a repeat share their active ops.

    python benchmarks/search_memory.py                      # a few minutes on 2 cores
    python benchmarks/search_memory.py --quick              # under a minute; results/search_memory_quick.*
    python benchmarks/search_memory.py --counts 4 10 --batch-size 64 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, median, write_results  # noqa: E402
from proxyless.net import build_net  # noqa: E402
from proxyless.ops import OpSpec, format_op, parse_op  # noqa: E402
from proxyless.optim import make_sgd  # noqa: E402
from proxyless.search.mixed_op import MixedOp, TwoPaths  # noqa: E402
from proxyless.search.strategies import GradientStrategy  # noqa: E402
from proxyless.search.supernet import SuperBlock, SuperNet  # noqa: E402
from proxyless.space import PROXYLESS_CIFAR, SearchSpace  # noqa: E402

STEPS = {"single": "single path (standalone net)", "weight": "weight step (supernet, 1 path)",
         "two": "two-path arch step", "full": "full arch step (DARTS)"}
# Every prefix of length 3, 6 and 9 holds each kernel size and each expand ratio equally often, so the
# mean cost of a sampled op is the same at every count; past 9 the order repeats from the start.
OP_ORDER = tuple(parse_op(name) for name in (
    "mb_k3_e1", "mb_k5_e3", "mb_k7_e6", "mb_k5_e1", "mb_k7_e3", "mb_k3_e6", "mb_k7_e1", "mb_k3_e3", "mb_k5_e6"))
DEFAULT_THREADS = torch.get_num_threads()  # read once: main() changes the thread count
MIXED = "searched blocks: the mixed op itself"
MIXED_ZEROS = "searched blocks: the mixed op itself, zeros for `zero`"
TARGET = 1.15  # two-path arch step / weight step saved activations, at every count
MB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[4, 7, 13],
                        help="candidates per shape-keeping layer, zero included (each >= 3)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds; also sampled plans per memory run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--channels-first", action="store_true",
                        help="NCHW tensors (the search loop and training default to channels-last)")
    parser.add_argument("--jobs", type=int, default=2, help="memory subprocesses run at once (RSS is per process)")
    parser.add_argument("--quick", action="store_true", help="batch 4, 1 repeat, 1 warm-up, 1 thread: a smoke test")
    parser.add_argument("--out-name", default=None, help="results name (default search_memory[_quick])")
    parser.add_argument("--no-write", action="store_true", help="print only; write nothing under results/")
    parser.add_argument("--one", choices=["baseline", *STEPS], help=argparse.SUPPRESS)  # subprocess mode
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:  # one thread: two OpenMP threads crawl when another process holds a core
        args.batch_size, args.repeats, args.warmup, args.threads = 4, 1, 1, 1
    args.out_name = args.out_name or ("search_memory_quick" if args.quick else "search_memory")
    if min(args.counts) < 3:
        parser.error("--counts: each count must be >= 3 (a two-path step needs 2 candidates on every layer)")
    if args.batch_size < 1 or args.repeats < 1 or args.warmup < 0 or args.jobs < 1:
        parser.error("--batch-size, --repeats and --jobs must be positive, --warmup non-negative")
    return args


# -- what is measured ---------------------------------------------------------------------------------


def candidate_ops(count: int) -> tuple[OpSpec, ...]:
    """The `count - 1` MBConv ops of a count (zero completes it): OP_ORDER, cycled past 9."""
    return tuple(OP_ORDER[i % len(OP_ORDER)] for i in range(count - 1))


@dataclass(frozen=True)
class RepeatedOpsSpace(SearchSpace):
    """A search space whose candidates may repeat an op, each repeat a separate candidate with its own weights.

    `SearchSpace` rejects repeats (a real space has no use for them); this benchmark needs them to reach
    13 candidates from the grammar's 9 MBConv ops. Every other check is the parent's.
    """

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(SearchSpace)}
        SearchSpace(**{**values, "candidates": tuple(dict.fromkeys(self.candidates))})


def build_supernet(count: int) -> SuperNet:
    """A PROXYLESS_CIFAR supernet with `count` candidates on shape-keeping layers (past 10, with repeats)."""
    ops = candidate_ops(count)
    values = {f.name: getattr(PROXYLESS_CIFAR, f.name) for f in fields(SearchSpace)}
    values.update(candidates=ops, zero_when_shape_kept=True)
    space_type = SearchSpace if len(set(ops)) == len(ops) else RepeatedOpsSpace
    return SuperNet(space_type(**values))


@dataclass
class Bench:
    """Everything one candidate count needs, built before anything is measured."""

    supernet: SuperNet
    images: torch.Tensor  # (B, 3, 32, 32)
    targets: torch.Tensor  # (B,)
    plans: list[list[TwoPaths]]  # one two-path sample per repeat, drawn at uniform p
    states: list[torch.Tensor]  # the generator state that draws plans[r] again
    nets: list[nn.Module]  # the standalone net of each plan's active paths
    net_optimizers: list[torch.optim.Optimizer]
    weight_optimizer: torch.optim.Optimizer
    strategies: dict[str, GradientStrategy]  # "two", "full"

    def tensors(self) -> list[torch.Tensor]:
        """Parameters, buffers and inputs: memory that exists whether or not a step runs."""
        modules = [self.supernet, *self.nets]
        return [t for m in modules for t in (*m.parameters(), *m.buffers())] + [self.images, self.targets]


def make_bench(count: int, batch_size: int, samples: int, channels_last: bool = True, seed: int = 0) -> Bench:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(seed)
    supernet = build_supernet(count).to(memory_format=fmt).train()
    images = torch.randn(batch_size, 3, 32, 32).contiguous(memory_format=fmt)
    targets = torch.randint(0, 10, (batch_size,))
    generator = torch.Generator().manual_seed(seed)
    states, plans = [], []
    for _ in range(samples):
        states.append(generator.get_state())
        plans.append(supernet.sample_two(generator))
    nets = [build_net(supernet.arch_of([p.active for p in plan])).to(memory_format=fmt).train() for plan in plans]
    return Bench(
        supernet, images, targets, plans, states, nets,
        net_optimizers=[make_sgd(net, lr=0.01) for net in nets],
        weight_optimizer=make_sgd(nn.ParameterList(supernet.weight_parameters()), lr=0.01),
        strategies={mode: GradientStrategy(supernet, lr=1e-3, mode=mode) for mode in ("two", "full")},
    )


def sgd_step(forward: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
             images: torch.Tensor, targets: torch.Tensor) -> None:
    loss = F.cross_entropy(forward(images), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def prepare(bench: Bench, step: str, r: int) -> Callable[[], object]:
    """Step `step` on plan r, ready to run (the untimed setup is done here)."""
    r %= len(bench.plans)
    images, targets = bench.images, bench.targets
    if step == "single":
        return lambda: sgd_step(bench.nets[r], bench.net_optimizers[r], images, targets)
    if step == "weight":
        active = [paths.active for paths in bench.plans[r]]
        return lambda: sgd_step(lambda x: bench.supernet(x, active), bench.weight_optimizer, images, targets)
    # arch steps: back to uniform p, so that the strategy draws plans[r] from states[r]
    with torch.no_grad():
        for alpha in bench.supernet.arch_parameters():
            alpha.zero_()
    generator = torch.Generator()
    generator.set_state(bench.states[r])
    strategy = bench.strategies[step]
    return lambda: strategy.step(bench.supernet, images, targets, generator)


# -- memory: one subprocess per (step, count) ----------------------------------------------------------


class SavedMeter:
    """Distinct storages saved for backward while active, each labelled by the module that saved it first.

    Storages of `exclude` (parameters, buffers, inputs) are skipped: only activations count.
    """

    def __init__(self, roots: list[nn.Module], exclude: list[torch.Tensor]) -> None:
        self.roots = roots
        self.skip = {t.untyped_storage().data_ptr() for t in exclude}
        self.saved: dict[int, tuple[int, str]] = {}  # storage pointer -> (bytes, label)
        self.stack: list[str] = []  # labels of the modules running now, innermost last

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in self.skip and ptr not in self.saved:
            self.saved[ptr] = (storage.nbytes(), self.stack[-1] if self.stack else "head + loss")
        return tensor

    def enter(self, label: str) -> None:  # hooks return None: a value would replace the module's input/output
        self.stack.append(label)

    def leave(self) -> None:
        self.stack.pop()

    def __enter__(self) -> SavedMeter:
        self.handles = []
        for root in self.roots:
            for name, module in root.named_modules():
                label = owner_label(name, module)
                self.handles.append(module.register_forward_pre_hook(lambda m, a, label=label: self.enter(label)))
                self.handles.append(module.register_forward_hook(lambda m, a, out: self.leave()))
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hooks.__exit__(*exc)
        for handle in self.handles:
            handle.remove()

    def by_label(self) -> Counter:
        counts: Counter = Counter()
        for nbytes, label in self.saved.values():
            counts[label] += nbytes
        return counts


def owner_label(name: str, module: nn.Module) -> str:
    """'blocks.3.mixed.candidates.1.depthwise.1' (a BatchNorm2d) -> 'searched blocks: BatchNorm2d'."""
    region = name.split(".")[0]
    if region in ("stem", "first_block"):
        return "stem + first block"
    if region == "blocks" and isinstance(module, (SuperBlock, MixedOp)):  # not saved by an op's layers
        return MIXED
    if region == "blocks":
        return f"searched blocks: {type(module).__name__}"
    return "head + loss"


def max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


def zero_gate_bytes(bench: Bench, r: int) -> int:
    """Bytes of the zeros tensors `forward_two_paths` makes where plan r samples `zero` (a map like x)."""
    size = bench.images.element_size() * len(bench.images)
    total = 0
    for block, slot, paths in zip(bench.supernet.blocks, bench.supernet.space.layers(), bench.plans[r]):
        if block.mixed.is_zero(paths.active) or block.mixed.is_zero(paths.inactive):
            total += size * slot.in_channels * slot.input_size**2  # (B, C, H, W)
    return total


def measure_one(args: argparse.Namespace) -> dict:
    """Subprocess mode: saved bytes of each plan's step and the process's peak RSS ('baseline': no step)."""
    torch.set_num_threads(args.threads)
    bench = make_bench(args.count, args.batch_size, args.repeats, not args.channels_first)
    saved, labels = [], Counter()
    for r in range(args.repeats if args.one != "baseline" else 0):
        run = prepare(bench, args.one, r)
        with SavedMeter([bench.supernet, *bench.nets], bench.tensors()) as meter:
            run()
        saved.append(sum(meter.by_label().values()))
        labels.update(meter.by_label())
        if args.one == "two":  # split off the zeros tensors that stand for `zero` in the gates
            zeros = zero_gate_bytes(bench, r)
            labels.update({MIXED: -zeros, MIXED_ZEROS: zeros})
    mean_labels = {label: nbytes / max(1, len(saved)) for label, nbytes in sorted(labels.items())}
    return {"saved_bytes": saved, "saved_by_label": mean_labels, "max_rss_bytes": max_rss_bytes()}


def run_child(args: argparse.Namespace, step: str, count: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", step, "--count", str(count),
               "--batch-size", str(args.batch_size), "--repeats", str(args.repeats), "--threads", str(args.threads),
               *(["--channels-first"] if args.channels_first else [])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory subprocess {step}/{count} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_memory(args: argparse.Namespace) -> dict[int, dict[str, dict]]:
    """{count: {step or 'baseline': child result}}, children run `args.jobs` at a time."""
    jobs = [(step, count) for count in args.counts for step in ("baseline", *STEPS)]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run_child(args, *job), jobs))
    memory: dict[int, dict[str, dict]] = {count: {} for count in args.counts}
    for (step, count), result in zip(jobs, results):
        memory[count][step] = result
    return memory


# -- time: interleaved rounds in this process ----------------------------------------------------------


def measure_time(args: argparse.Namespace, benches: dict[int, Bench]) -> dict[int, dict[str, list[float]]]:
    """Seconds per step; each round runs every step at every count, warm-up rounds are dropped."""
    times: dict[int, dict[str, list[float]]] = {count: {step: [] for step in STEPS} for count in benches}
    for r in range(args.warmup + args.repeats):
        row: dict[int, list[float]] = {}
        for count, bench in benches.items():
            row[count] = []
            for step in STEPS:
                run = prepare(bench, step, r)
                started = time.perf_counter()
                run()
                row[count].append(time.perf_counter() - started)
                if r >= args.warmup:
                    times[count][step].append(row[count][-1])
        kind = "warm-up" if r < args.warmup else "round"
        print(f"{kind} {r + 1}/{args.warmup + args.repeats} ms ({'/'.join(STEPS)}): " + "  ".join(
            f"{count}: " + "/".join(f"{t * 1e3:.0f}" for t in ts) for count, ts in row.items()), flush=True)
    return times


def summarize(memory: dict[int, dict[str, dict]], times: dict[int, dict[str, list[float]]]) -> dict:
    """{count: {step: saved_mb, saved_ratio, rss_mb, ms, time_ratio}}, ratios to the single-path step."""
    summary = {}
    for count in memory:
        saved = {step: sum(memory[count][step]["saved_bytes"]) / len(memory[count][step]["saved_bytes"])
                 for step in STEPS}
        baseline = memory[count]["baseline"]["max_rss_bytes"]
        single = times[count]["single"]
        summary[count] = {step: {
            "saved_mb": saved[step] / MB,
            "saved_ratio": saved[step] / saved["single"],
            "rss_mb": (memory[count][step]["max_rss_bytes"] - baseline) / MB,
            "ms": median(times[count][step]) * 1e3,
            "time_ratio": median([t / s for t, s in zip(times[count][step], single)]),
        } for step in STEPS}
    return summary


# -- report ---------------------------------------------------------------------------------------------


def main_table(summary: dict) -> list[str]:
    counts = list(summary)
    head = "| step | " + " | ".join(f"{c}: saved MB | × | RSS Δ MB | ms | ×" for c in counts) + " |"
    rows = [head, "|---|" + "---:|" * 5 * len(counts)]
    for step, label in STEPS.items():
        cells = []
        for count in counts:
            s = summary[count][step]
            cells.append(f"{s['saved_mb']:.1f} | {s['saved_ratio']:.2f} | {s['rss_mb']:.1f} | {s['ms']:.0f} | "
                         f"{s['time_ratio']:.2f}")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def claims(summary: dict) -> tuple[list[str], dict]:
    """The issue's two claims, checked on the numbers.

    Flatness is judged on the ratio to the single-path step, which runs the same active ops: the
    absolute numbers also move with the sampled mix (zero is drawn with p = 1/count, for one).
    """
    counts = list(summary)
    ratios = {step: [summary[c][step]["saved_ratio"] for c in counts] for step in STEPS}
    growth = {step: ratios[step][-1] / ratios[step][0] for step in STEPS}
    arch_vs_weight = [summary[c]["two"]["saved_mb"] / summary[c]["weight"]["saved_mb"] for c in counts]
    rss_vs_weight = [summary[c]["two"]["rss_mb"] / summary[c]["weight"]["rss_mb"] for c in counts]
    flat = all(growth[s] <= TARGET for s in ("weight", "two")) and growth["full"] > TARGET
    met = all(ratio <= TARGET for ratio in arch_vs_weight)
    listed = {step: ", ".join(f"{r:.2f}" for r in ratios[step]) for step in STEPS}
    lines = [
        f"- **Binarized steps flat, full grows** ({'holds' if flat else 'DOES NOT HOLD'}): saved activations / "
        f"single-path step at {', '.join(map(str, counts))} candidates: weight step {listed['weight']}; two-path "
        f"arch step {listed['two']}; full arch step {listed['full']} (×{growth['full']:.2f} from {counts[0]} to "
        f"{counts[-1]}; flat = within ×{TARGET:.2f}).",
        f"- **Arch step within 15% of a weight step** ({'met' if met else 'NOT MET'}): two-path arch step / "
        f"weight step saved activations: {', '.join(f'{r:.2f}' for r in arch_vs_weight)} at "
        f"{', '.join(map(str, counts))} candidates (target ≤ {TARGET:.2f}); peak RSS Δ: "
        f"{', '.join(f'{r:.2f}' for r in rss_vs_weight)}.",
    ]
    return lines, {"saved_ratio_growth": growth, "arch_vs_weight_saved": arch_vs_weight,
                   "arch_vs_weight_rss": rss_vs_weight, "binarized_flat_full_grows": flat, "target_met": met}


def breakdown_table(memory: dict[int, dict[str, dict]]) -> list[str]:
    """Mean saved MB by the module that saved it: weight step vs two-path arch step."""
    counts = list(memory)
    labels = sorted({label for c in counts for s in ("weight", "two") for label in memory[c][s]["saved_by_label"]})
    rows = ["| saved by | " + " | ".join(f"{c}: weight | {c}: two-path" for c in counts) + " |",
            "|---|" + "---:|" * 2 * len(counts)]
    for label in labels:
        cells = [f"{memory[c][s]['saved_by_label'].get(label, 0) / MB:.2f}" for c in counts for s in ("weight", "two")]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def candidates_lines(counts: list[int]) -> list[str]:
    lines = []
    for count in counts:
        ops = candidate_ops(count)
        repeats = ops[len(OP_ORDER):]
        note = (f" ({', '.join(map(format_op, repeats))} repeated with their own weights)" if repeats else "")
        lines.append(f"- {count}: {', '.join(map(format_op, ops))} + zero{note}")
    return lines


def rerun_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run: the flags that differ from their defaults."""
    defaults = parse_args(["--quick"] if args.quick else [])
    flags = ["--quick"] if args.quick else []
    for key in ("counts", "batch_size", "repeats", "warmup", "threads"):
        value = getattr(args, key)
        if value != getattr(defaults, key):
            flags += [f"--{key.replace('_', '-')}", *map(str, value if isinstance(value, list) else [value])]
    flags += ["--channels-first"] if args.channels_first else []
    return " ".join(["python benchmarks/search_memory.py", *flags])


def header_lines(args: argparse.Namespace, env: dict) -> list[str]:
    layout = "channels-first" if args.channels_first else "channels-last"
    return [
        "# Search steps: activation memory and time vs candidates per layer",
        "",
        f"PROXYLESS_CIFAR (32 px, width 0.5, {PROXYLESS_CIFAR.num_layers} searchable layers), batch {args.batch_size} "
        f"of random inputs, {layout}, {args.threads} thread(s) (1-minute load average "
        f"{env['load_average_at_start']:.1f} at start), torch {torch.__version__}, {env['cpu']}.",
        "",
        "Candidates per shape-keeping layer, **zero included**; a layer that changes stride or width has the same "
        "MBConv ops without zero. The grammar has 9 MBConv ops and `SearchSpace` rejects a repeated one, so past "
        "10 the benchmark builds its supernet on `RepeatedOpsSpace`, a `SearchSpace` subclass (in the benchmark "
        "only) that accepts repeats: each repeat is a separate candidate with its own weights.",
        "",
        *candidates_lines(args.counts),
    ]


def method_lines(args: argparse.Namespace) -> list[str]:
    return [
        f"× = ratio to the single-path step. **saved MB**: bytes saved for backward during the step (distinct "
        f"storages packed by `torch.autograd.graph.saved_tensors_hooks`; parameters, buffers and the input batch "
        f"excluded), mean over {args.repeats} sampled plans. **RSS Δ**: peak RSS (`ru_maxrss`) of a fresh "
        f"subprocess running those {args.repeats} steps minus that of a baseline subprocess with the same setup and "
        f"no step. **ms**: median of {args.repeats} rounds interleaving every step and count, after {args.warmup} "
        f"warm-up rounds; its × is the median of the per-round ratios. Repeat r draws one two-path sample at "
        f"uniform p: the arch step uses it, the single-path and weight steps run its active ops.",
    ]


def breakdown_lines(memory: dict) -> list[str]:
    return [
        "## Saved for backward, by the module that saved it (mean MB)",
        "",
        *breakdown_table(memory),
        "",
        "A storage that several autograd nodes save counts once, for the module that saved it first. "
        "`the mixed op itself` is what `SuperBlock`/`MixedOp` save outside their ops: "
        "`_BinaryGates` keeps the active and the inactive outputs (a zeros tensor for `zero`), two output maps per "
        "layer whatever the plan. With weights frozen nothing before the first gate requires grad, so the arch "
        "step saves nothing in the stem, the first block and the first searched layer's op. `ReLU6` rows are "
        "copies: in-place `relu6_` clones its input for its backward, so the activation that the next conv saves "
        "is a second map (counted under `Conv2d`, with each op's input). In the arch step those `Conv2d` maps "
        "serve only weight gradients, which frozen weights never get: `ConvolutionBackward` saves its input "
        "whenever anything in the call requires grad.",
    ]


def report(args: argparse.Namespace, memory: dict, times: dict, load: float) -> None:
    """Print the Markdown report and write it, with the raw numbers, under benchmarks/results/."""
    summary = summarize(memory, times)
    claim_lines, verdict = claims(summary)
    env = {**environment(), "load_average_at_start": load}
    lines = [*header_lines(args, env), "", *main_table(summary), "", *method_lines(args), "", *claim_lines, "",
             *breakdown_lines(memory), "", f"Rerun: `{rerun_command(args)}`", ""]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        result = {"env": env, "args": {k: v for k, v in vars(args).items() if k not in ("one", "count")},
                  "candidates": {c: [format_op(op) for op in candidate_ops(c)] + ["zero"] for c in args.counts},
                  "summary": summary, "claims": verdict, "memory": memory, "times_s": times}
        write_results(args.out_name, result, markdown)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.one:  # subprocess mode: one JSON line on stdout
        print(json.dumps(measure_one(args)))
        return
    torch.set_num_threads(args.threads)
    load, started = os.getloadavg()[0], time.perf_counter()
    memory = measure_memory(args)
    print(f"memory: {len(args.counts) * (len(STEPS) + 1)} subprocesses in {time.perf_counter() - started:.0f} s",
          flush=True)
    benches = {c: make_bench(c, args.batch_size, args.repeats, not args.channels_first) for c in args.counts}
    times = measure_time(args, benches)
    report(args, memory, times, load)


if __name__ == "__main__":
    main()
