"""Which residual-branch start lets the supernet see depth, before any training says so?

`supernet_vs_trained_w75e18f.md` found the 68 ms supernet depth-blind: its searched net scores the same
with its optional layers (those that may be `zero`) all `zero` as all `mb_k7_e6`, because those layers'
residual branches start at scale 0 (`--residual-init zero`) and are still at 0.01-0.05 after 18 epochs.
Started at full scale (`unit`) the supernet trained 10 points weaker. This script runs one short search
per start scale, on the same images with the same settings, and scores each supernet's own searched net
with its optional layers set alike (zero / the first candidate / the last) and its expansions set alike,
as `supernet_vs_trained.py` does: a supernet that sees depth scores the deeper nets higher.

    python benchmarks/residual_init.py --data benchmarks/results/search_vs_baselines_runs/data \
        --scales 0 0.25 --epochs 8 --limit-images 8000     # about 45 minutes per scale on one thread

Each search is resumable in `--out`/scale_<s>; a finished one is read back. Writes
benchmarks/results/<name>.{json,md} after every scale.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxyless as px  # noqa: E402
from common import RESULTS, environment, write_results  # noqa: E402
from proxyless.infra.atomic import atomic_write_text  # noqa: E402
from proxyless.infra.checkpoint import load_checkpoint  # noqa: E402
from proxyless.infra.run_files import read_metrics  # noqa: E402
from proxyless.latency.lut import load_lut  # noqa: E402
from proxyless.latency.predict import LatencyModel  # noqa: E402
from proxyless.search.pipeline import supernet_of  # noqa: E402
from supernet_vs_trained import Scorer, depth_variants, expansion_variants, residual_scales  # noqa: E402

SPACE = Path(__file__).resolve().parent / "spaces" / "proxyless-cifar-w075.yaml"
LUT = RESULTS / "pinned" / "lut_proxyless-cifar-w075_torch-cpu_b32.json"


def run_search(scale: float, data, args: argparse.Namespace) -> tuple[Path, float]:
    """The search at residual start `scale` (resumed if interrupted), and its wall time in this call."""
    run_dir = args.out / f"scale_{scale:g}"
    done = run_dir / "residual_init.json"
    if done.is_file():  # written last: the search and its derivation are finished
        return run_dir, json.loads(done.read_text())["search_s"]
    config = px.SearchConfig(epochs=args.epochs, warmup_epochs=args.warmup_epochs, sampling=args.sampling,
                             residual_init=scale, seed=args.seed, progress=False)
    resume = (run_dir / "checkpoint.pt").is_file()
    started = time.perf_counter()
    px.search_arch(str(args.space), data, config, out=run_dir, resume=resume, overwrite=not resume,
                   latency=px.LatencyTarget(lut=str(args.lut), target_ms=args.target_ms, measure=False))
    seconds = time.perf_counter() - started
    atomic_write_text(done, json.dumps({"search_s": seconds, "resumed": resume}) + "\n")
    return run_dir, seconds


def score_run(run_dir: Path, data, args: argparse.Namespace) -> dict:
    """The supernet's view of its own searched net: as searched, its depth and expansion variants."""
    supernet = supernet_of(load_checkpoint(run_dir / "checkpoint.pt"), str(run_dir))
    arch = px.load_arch(run_dir / "arch.json")
    scorer = Scorer(supernet, data.valid, data.train, args.images, args.bn_batches, seed=args.seed)
    model = LatencyModel(supernet.space, load_lut(args.lut))
    metrics = read_metrics(run_dir)
    nets = [arch, *depth_variants(arch), *expansion_variants(arch)]
    optional = [any(slot.is_identity(op) for op in slot.candidates) for slot in arch.space.layers()]
    kept = sum(not slot.is_identity(op) for slot, op, free in zip(arch.space.layers(), arch.ops, optional) if free)
    return {"nets": [{"net": net.name, "predicted_ms": model.of_arch(net), "supernet_top1": scorer(net)}
                     for net in nets],
            "optional_kept": kept, "optional_layers": sum(optional),
            "residual_scales": residual_scales(supernet),
            "train_top1": [row.get("train_top1") for row in metrics],
            "argmax_valid_top1": [row.get("valid_top1_argmax") for row in metrics]}


def report(rows: list[dict], args: argparse.Namespace) -> str:
    head = ["| residual start | search s | last valid top-1 (argmax) | optional layers kept | searched | "
            "optional zero | optional first | optional last | expansion low | expansion high | optional |γ| |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        scores = [f"{100 * net['supernet_top1']:.1f} ({net['predicted_ms']:.0f} ms)" for net in row["nets"]]
        gammas = row["residual_scales"]["optional"]
        head.append(f"| {row['scale']:g} | {row['search_s']:.0f} | {100 * row['argmax_valid_top1'][-1]:.1f} | "
                    f"{row['optional_kept']} of {row['optional_layers']} | " + " | ".join(scores) +
                    f" | {min(gammas):.3f}–{max(gammas):.3f} |")
    return "\n".join([
        f"# Residual start against depth sight ({args.space.name}, target {args.target_ms} table-ms)", "",
        f"One search per start scale of the shape-keeping residual branches (`--residual-init`): {args.epochs} "
        f"epochs ({args.warmup_epochs} warmup), sampling {args.sampling}, on {args.limit_images} images of "
        f"`{args.data}` (20% held out for α), seed {args.seed}. Then the supernet's own searched net scored on "
        f"{args.images} valid images (BN recalibrated on each path over {args.bn_batches} train batches of 100), "
        "as searched and with its optional layers (those that may be `zero`) all zero / all the space's first "
        "candidate / all its last, and with every expansion at the space's lowest / highest. Each cell: supernet "
        "valid top-1 (predicted latency). A supernet that sees depth scores 'optional last' above 'optional "
        "zero'.", "", *head, "",
        f"Reproduce: `python benchmarks/residual_init.py --data {args.data} --scales "
        f"{' '.join(f'{s:g}' for s in args.scales)} --epochs {args.epochs} --limit-images {args.limit_images}`", ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 ImageFolder root, or 'sample'")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.25])
    parser.add_argument("--space", type=Path, default=SPACE)
    parser.add_argument("--lut", type=Path, default=LUT)
    parser.add_argument("--target-ms", type=float, default=68.0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--sampling", default="fair-largest")
    parser.add_argument("--limit-images", type=int, default=8000)
    parser.add_argument("--images", type=int, default=1000, help="valid images per scored net")
    parser.add_argument("--bn-batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "residual_init_runs")
    parser.add_argument("--name", default="residual_init")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = px.get_space(str(args.space))
    data = px.load_search_data(args.data, space.input_size, 0.2, args.limit_images, args.seed, progress=False)
    rows = []
    for scale in args.scales:
        run_dir, seconds = run_search(scale, data, args)
        torch.manual_seed(args.seed)  # the augmented BN batches: the same for every scale
        rows.append({"scale": scale, "search_s": seconds, **score_run(run_dir, data, args)})
        print(f"scale {scale:g}: " + ", ".join(f"{n['net'].split(', ')[-1]} {100 * n['supernet_top1']:.1f}"
                                               for n in rows[-1]["nets"]), flush=True)
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        write_results(args.name, {"environment": environment(), "settings": settings, "rows": rows},
                      report(rows, args), args.results)
    print(report(rows, args))


if __name__ == "__main__":
    main()
