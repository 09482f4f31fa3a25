"""Did the supernet see what training saw? A round's trained nets scored by the supernet that chose them.

`search_vs_baselines.py` trains a round's searched nets and the random nets of their latency band from
scratch. Where a random net trains better than the searched one, two different things can have gone
wrong, and they call for different fixes:

- the supernet ranks that random net above the searched net too: α (or the derivation) missed what the
  supernet knew, and picking by the supernet's score (`search --derive-top`) would have helped;
- the supernet ranks the searched net higher: the supernet's accuracy misranks nets that training
  separates, and no derivation from it can help.

This script scores, with a finished family search's supernet (its checkpoint), every net of the round
that has trained (searched and random), and `--band-nets` more random nets predicted within ±5% of each
searched net's latency, so that each net also gets a percentile among the nets of its band as the
supernet sees them. Each score is the top-1 of the single path on `--images` images of the valid split
the search held out for α (the same images for every net), BN recalibrated on that path first. The
test split is read only through the trainings' own result.json files.

    python benchmarks/supernet_vs_trained.py --run benchmarks/results/search_vs_baselines_runs/family_w75 \
        --round w75 --lut benchmarks/results/pinned/lut_proxyless-cifar-w075_torch-cpu_b32.json

Writes benchmarks/results/supernet_vs_trained_<round>.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment, write_results  # noqa: E402
from proxyless.arch import Arch, load_arch  # noqa: E402
from proxyless.infra.atomic import read_json  # noqa: E402
from proxyless.infra.checkpoint import load_checkpoint  # noqa: E402
from proxyless.latency.band import archs_in_band  # noqa: E402
from proxyless.latency.lut import load_lut  # noqa: E402
from proxyless.latency.predict import LatencyModel  # noqa: E402
from proxyless.search.pipeline import load_search_data, supernet_of  # noqa: E402
from proxyless.search.quality import subnet_accuracy  # noqa: E402
from proxyless.search.scoring import scoring_batches  # noqa: E402
from proxyless.search.supernet import SuperNet  # noqa: E402

WORK = RESULTS / "search_vs_baselines_runs"
BAND = 0.05  # the band of the reference nets, a fraction of the searched net's predicted latency


def trained_top1(train_dir: Path, name: str) -> list[float]:
    """Test top-1 of every finished training of net `name` (one per seed; none while it trains)."""
    runs = sorted(train_dir.glob(f"{name}_seed*/result.json"))
    return [float(read_json(path, ValueError, "training result")["test_top1"]) for path in runs]


def round_nets(work: Path, round_name: str, label: str) -> list[Arch]:
    """The round's searched net at target `label` ('68ms') and its random nets, as the benchmark saved them."""
    archs = work / "archs"
    searched = archs / f"searched-{round_name}_{label}.json"
    randoms = sorted(archs.glob(f"random-{round_name}_{label}_*.json"))
    return [load_arch(searched), *(load_arch(path) for path in randoms)]


class Scorer:
    """Top-1 of single paths of one supernet, all on the same valid images and BN batches."""

    def __init__(self, supernet: SuperNet, valid, train, images: int, bn_batches: int, batch_size: int = 100,
                 seed: int = 0) -> None:
        self.supernet = supernet
        self.loader, self.batches = scoring_batches(valid, train, images, bn_batches, batch_size, seed)

    def __call__(self, arch: Arch) -> float:
        plan = self.supernet.space.indices_of(arch)
        return subnet_accuracy(self.supernet, plan, self.loader, self.batches, memory_format=torch.channels_last)


def residual_scales(supernet: SuperNet) -> dict[str, list[float]]:
    """Per layer, the mean |γ| of its candidates' project BN: in the layers that may be `zero` ("optional")
    it scales the residual branch added to the shortcut (the search starts it at zero), in the others
    ("fixed") the layer's whole output."""
    scales: dict[str, list[float]] = {"optional": [], "fixed": []}
    for mixed in supernet.mixed_ops():
        norms = [module for name, module in mixed.named_modules()
                 if isinstance(module, torch.nn.BatchNorm2d) and "project" in name.split(".")]
        scale = statistics.mean(float(norm.weight.detach().abs().mean()) for norm in norms)
        optional = any(mixed.is_zero(index) for index in range(len(mixed.specs)))
        scales["optional" if optional else "fixed"].append(scale)
    return scales


def percentile(value: float, pool: list[float]) -> float:
    """The share of `pool` scored below `value` (ties count half)."""
    return (sum(p < value for p in pool) + 0.5 * sum(p == value for p in pool)) / len(pool)


def score_target(label: str, scorer: Scorer, model: LatencyModel, args: argparse.Namespace) -> dict:
    """The rows of one target: each trained net of the round and the band's reference nets."""
    nets = round_nets(args.work, args.round, label)
    searched_ms = model.of_arch(nets[0])
    band = archs_in_band(model, searched_ms * (1 - BAND), searched_ms * (1 + BAND), args.band_nets,
                         seed=args.seed, exclude=nets)
    band_scores = [scorer(arch) for arch in band]
    rows = []
    for arch in nets:
        score, top1 = scorer(arch), trained_top1(args.work / "train", arch.name)
        rows.append({"net": arch.name, "predicted_ms": model.of_arch(arch), "supernet_top1": score,
                     "band_percentile": percentile(score, band_scores),
                     "trained_top1": statistics.mean(top1) if top1 else None, "seeds": len(top1)})
    depth = [{"net": arch.name, "predicted_ms": model.of_arch(arch), "supernet_top1": scorer(arch)}
             for arch in [*depth_variants(nets[0]), *expansion_variants(nets[0])]]
    return {"target": label, "rows": rows, "depth": depth,
            "band": {"count": len(band_scores), "median": statistics.median(band_scores), "max": max(band_scores),
                     "scores": band_scores}}


def depth_variants(arch: Arch) -> list[Arch]:
    """`arch` with every optional layer (one that may be `zero`) set alike: to zero, to the space's first
    candidate, to its last. Its other layers stay as searched. A supernet that sees depth scores them apart."""
    ops = arch.op_strings()
    # per layer its identity candidate (`zero`, or a shape-keeping `skip`); None where it has none
    identity = [next((str(op) for op in slot.candidates if slot.is_identity(op)), None) for slot in arch.space.layers()]
    first, last = str(arch.space.candidates[0]), str(arch.space.candidates[-1])
    fills = {"zero": identity, first: [first] * len(ops), last: [last] * len(ops)}
    return [Arch.from_strings(arch.space, [op if free is None else fill
                                           for op, free, fill in zip(ops, identity, chosen)],
                              name=f"{arch.name}, optional layers {label}")
            for label, chosen in fills.items()]


def expansion_variants(arch: Arch) -> list[Arch]:
    """`arch` with every MBConv layer's expansion set alike, to each expansion of the space; kernels and
    `zero` layers stay as searched, and so does a layer whose kernel has no candidate at that expansion.
    A supernet that sees width scores the wider net higher."""
    ops = arch.op_strings()
    allowed = [{str(op) for op in slot.candidates} for slot in arch.space.layers()]
    expansions = sorted({op.rsplit("_e", 1)[1] for op in map(str, arch.space.candidates) if "_e" in op})

    def widened(op: str, ratio: str, choices: set[str]) -> str:
        other = op.rsplit("_e", 1)[0] + f"_e{ratio}" if "_e" in op else op
        return other if other in choices else op

    return [Arch.from_strings(arch.space, [widened(op, ratio, choices) for op, choices in zip(ops, allowed)],
                              name=f"{arch.name}, every expansion {ratio}")
            for ratio in expansions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the round's family search directory (checkpoint.pt)")
    parser.add_argument("--round", required=True, help="the round's name in the net names, e.g. w75")
    parser.add_argument("--lut", type=Path, required=True, help="the latency table the round searched with")
    parser.add_argument("--work", type=Path, default=WORK, help="search_vs_baselines' run directory")
    parser.add_argument("--data", type=Path, default=None, help="the search's images (default: WORK/data)")
    parser.add_argument("--targets", nargs="+", default=None, help="family labels to score (default: all)")
    parser.add_argument("--band-nets", type=int, default=20, help="random reference nets per target")
    parser.add_argument("--images", type=int, default=2000, help="valid images per net")
    parser.add_argument("--bn-batches", type=int, default=8, help="train batches of 100 that recalibrate BN")
    parser.add_argument("--seed", type=int, default=0, help="the search's --seed (its valid split)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)  # the augmented BN batches: the same on every rerun
    started = time.perf_counter()
    state = load_checkpoint(args.run / "checkpoint.pt")
    labels = args.targets or [entry["label"] for entry in state["family"]]
    supernet = supernet_of(state, str(args.run), labels[0])  # the weights are shared; α plays no part
    splits = load_search_data(str(args.data or args.work / "data"), supernet.space.input_size, 0.2, seed=args.seed,
                              progress=False)
    scorer = Scorer(supernet, splits.valid, splits.train, args.images, args.bn_batches, seed=args.seed)
    model = LatencyModel(supernet.space, load_lut(args.lut))
    targets = [score_target(label, scorer, model, args) for label in labels]
    write(args, targets, residual_scales(supernet), time.perf_counter() - started)


def write(args: argparse.Namespace, targets: list[dict], scales: dict[str, list[float]], seconds: float) -> None:
    table = ["| target | net | predicted ms | supernet valid top-1 | percentile in band (supernet) "
             "| trained test top-1 (seeds) |", "|---|---|---|---|---|---|"]
    for target in targets:
        for row in target["rows"]:
            trained = "training" if row["trained_top1"] is None else f"{100 * row['trained_top1']:.2f} ({row['seeds']})"
            table.append(f"| {target['target']} | {row['net']} | {row['predicted_ms']:.1f} "
                         f"| {100 * row['supernet_top1']:.1f} | {row['band_percentile']:.2f} | {trained} |")
        band = target["band"]
        table.append(f"| {target['target']} | {band['count']} random nets of the band | | median "
                     f"{100 * band['median']:.1f}, best {100 * band['max']:.1f} | | |")
    depth = ["| net | predicted ms | supernet valid top-1 |", "|---|---|---|"]
    depth += [f"| {row['net']} | {row['predicted_ms']:.1f} | {100 * row['supernet_top1']:.1f} |"
              for target in targets for row in target["depth"]]
    markdown = "\n".join([
        f"# Round {args.round}: the supernet's scores against training", "",
        f"Supernet: `{args.run}` (its weights; BN recalibrated on each path over {args.bn_batches} train batches "
        f"of 100). Each score: top-1 on the same {args.images} valid images (the split held out for α). The "
        f"percentile is among {args.band_nets} random nets predicted within ±{BAND:.0%} of the searched net's "
        f"latency (its band). Trained: test top-1 of the benchmark's trainings, mean over seeds.", "",
        *table, "",
        "Depth and width as the supernet sees them: each searched net with all its optional layers (those "
        "that may be `zero`) set alike, its other layers as searched; then with every MBConv's expansion set "
        "alike, its kernels and `zero` layers as searched:", "", *depth, "",
        f"Project-BN |γ| (mean over a layer's candidates): {len(scales['optional'])} optional layers "
        f"{min(scales['optional']):.3f}–{max(scales['optional']):.3f} (their residual branch's scale), "
        f"{len(scales['fixed'])} fixed layers {min(scales['fixed']):.3f}–{max(scales['fixed']):.3f}.", "",
        f"Reproduce: `python benchmarks/supernet_vs_trained.py --run {args.run} --round {args.round} --lut {args.lut}"
        f"{' --targets ' + ' '.join(args.targets) if args.targets else ''}"
        f" --band-nets {args.band_nets} --images {args.images}` ({seconds:.0f} s on one thread)", ""])
    data = {"environment": environment(), "seconds": seconds, "residual_scales": scales,
            "args": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
            "targets": targets}
    write_results(f"supernet_vs_trained_{args.round}", data, markdown, args.results)
    print(markdown)


if __name__ == "__main__":
    main()
