"""Is the supernet's ranking limited by how many valid images score each subnet? (issue 15)

Takes a finished search of `benchmarks/search_quality.py` (its run directory, with checkpoint.pt),
scores `--nets` random nets of the nas-bench-macro space (the benchmark's own, seed 1) on `--images`
held-out valid images split into disjoint random chunks of `--chunk`, with the supernet's running BN
statistics, and reports Kendall τ against the table for every chunk alone, every pair of chunks, ...,
and all of them: if τ rises with the images, noise in each net's score limits the ranking; if it stays
flat, the supernet does. Also, per searchable layer: how much a `skip` there changes a net's score in
the supernet and its true accuracy (mean over the nets with a skip there minus the others), and the
magnitude of the candidates' last BN scale (|γ| of the project BN; a residual branch starts at 0).

    python benchmarks/rank_images.py --run benchmarks/results/search_quality_runs/entangled-fair/p50_seed0 \
        --data ~/data/cifar10-jpg --truth nas-bench-macro_cifar10.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402

import proxyless as px  # noqa: E402
from common import RESULTS, environment, write_results  # noqa: E402
from proxyless.infra.checkpoint import load_checkpoint  # noqa: E402
from proxyless.infra.distributed import keyed_generator  # noqa: E402
from proxyless.search.pipeline import supernet_of  # noqa: E402
from proxyless.search.quality import kendall_tau, load_ground_truth, sample_archs, subnet_accuracy  # noqa: E402


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    space = px.get_space("nas-bench-macro")
    truth = load_ground_truth(args.truth, space)
    config = json.loads((Path(args.run) / "config.json").read_text())
    search = config["search"]
    data = px.load_search_data(args.data, 32, valid_size=args.valid_size, progress=False)  # search_quality's split
    supernet = supernet_of(load_checkpoint(Path(args.run) / "checkpoint.pt"), args.run)
    chunks = disjoint_chunks(data.valid, args.images, args.chunk, seed=args.seed)
    archs = sample_archs(space, args.nets, seed=1)  # the ones search_quality.py ranks
    # accuracy[c][k]: net k's top-1 on chunk c (chunks have equal size, so a mean over chunks is the union's)
    accuracy = [[subnet_accuracy(supernet, arch, chunk, memory_format=torch.channels_last) for arch in archs]
                for chunk in chunks]
    true = [truth.accuracy(arch) for arch in archs]
    rows = []
    for size in sorted({n for n in (1, 2, 4, 8, 16) if n <= len(chunks)} | {len(chunks)}):
        taus = [kendall_tau([statistics.fmean(accuracy[c][k] for c in group) for k in range(len(archs))], true)
                for group in (range(i, i + size) for i in range(0, len(chunks) - size + 1, size))]
        rows.append({"images": size * args.chunk, "groups": len(taus), "tau_mean": statistics.fmean(taus),
                     "tau_min": min(taus), "tau_max": max(taus)})
    scores = [100 * statistics.fmean(accuracy[c][k] for c in range(len(chunks))) for k in range(len(archs))]
    report = {"environment": environment(), "settings": {k: str(v) for k, v in vars(args).items()},
              "search": {k: search[k] for k in ("epochs", "warmup_epochs", "weights", "sampling", "seed")},
              "rows": rows, "layers": layer_report(supernet, archs, scores, true),
              "wall_s": time.perf_counter() - started}
    markdown = render(report)
    write_results(args.name, report, markdown, args.results)
    print(markdown)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished search run directory of search_quality.py")
    parser.add_argument("--data", required=True, help="CIFAR-10 ImageFolder root (the JPEG tree)")
    parser.add_argument("--truth", required=True, help="NAS-Bench-Macro's nas-bench-macro_cifar10.json")
    parser.add_argument("--valid-size", type=float, default=0.1, help="as search_quality.py (its default)")
    parser.add_argument("--nets", type=int, default=100)
    parser.add_argument("--images", type=int, default=2_000, help="valid images in all")
    parser.add_argument("--chunk", type=int, default=500, help="images per disjoint chunk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="rank_images")
    args = parser.parse_args()
    if not 0 < args.chunk <= args.images:
        parser.error("need 0 < --chunk <= --images")
    return args


def layer_report(supernet, archs: list[list[int]], scores: list[float], true: list[float]) -> list[dict]:
    """Per layer: the effect of a skip there on the supernet's score and on the true accuracy (points), and
    the mean |γ| of the candidates' project BNs."""
    rows = []
    for layer, mixed in enumerate(supernet.mixed_ops()):
        skip = [i for i, spec in enumerate(mixed.specs) if str(spec) == "skip"]
        has = [k for k, arch in enumerate(archs) if arch[layer] in skip]
        rest = [k for k in range(len(archs)) if k not in has]
        norms = [m for name, m in mixed.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
                 and ("project" in name)]
        rows.append({"layer": layer, "keeps_shape": bool(supernet.blocks[layer].shortcut),
                     "skip_effect_score": _effect(scores, has, rest), "skip_effect_true": _effect(true, has, rest),
                     "project_gamma": statistics.fmean(float(m.weight.abs().mean()) for m in norms) if norms else None})
    return rows


def _effect(values: list[float], has: list[int], rest: list[int]) -> float | None:
    if not has or not rest:
        return None
    return statistics.fmean(values[k] for k in has) - statistics.fmean(values[k] for k in rest)


def disjoint_chunks(valid, images: int, chunk: int, seed: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """images // chunk disjoint random chunks of `valid`, each decoded once into batches of 100."""
    order = torch.randperm(len(valid), generator=keyed_generator(seed, 13))[: images - images % chunk].tolist()
    return [list(DataLoader(Subset(valid, sorted(order[i:i + chunk])), batch_size=100))
            for i in range(0, len(order), chunk)]


def render(report: dict) -> str:
    s = report["search"]
    lines = [f"# Supernet ranking against the number of valid images per subnet ({report['settings']['nets']} "
             f"random NAS-Bench-Macro nets, running BN; search: {s['weights']} weights, {s['sampling']} warmup, "
             f"{s['epochs']} epochs, seed {s['seed']})", "",
             "| valid images per net | disjoint sets | Kendall τ (mean) | min | max |", "|---|---|---|---|---|"]
    lines += [f"| {r['images']} | {r['groups']} | {r['tau_mean']:.3f} | {r['tau_min']:.3f} | {r['tau_max']:.3f} |"
              for r in report["rows"]]
    lines += ["", "Per layer (all images): a skip's effect on the supernet's score and on the true accuracy "
              "(points; nets with a skip there minus the others), and the candidates' project-BN |γ|:", "",
              "| layer | keeps shape | skip effect, supernet | skip effect, table | project |γ| |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['keeps_shape']} | {_points(r['skip_effect_score'])} "
              f"| {_points(r['skip_effect_true'])} | {_points(r['project_gamma'], 3)} |" for r in report["layers"]]
    lines += ["", f"Wall time {report['wall_s'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def _points(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:+.{digits}f}" if digits == 2 else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
