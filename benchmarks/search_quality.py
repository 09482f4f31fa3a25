"""Does the search find good networks? Scored against NAS-Bench-Macro's true CIFAR-10 accuracies.

For each supernet-training variant (the ablation; `--variants`), on the `nas-bench-macro` space:
  1. a hardware-aware search at the median target of the space's predicted latency (seed 0);
  2. supernet ranking: each of `--rank-nets` random nets scored by the trained supernet on held-out valid
     images, with and without recalibrating its BN statistics, against the table (Kendall τ, Spearman ρ,
     over all of them and over those within ±5% of the median latency);
  3. regret of the derived net: its true accuracy against the best net within target + 5%, its
     percentile in that pool, and the baselines (mean of the nets in the ±5% band, the largest net that fits);
     and the regret of the net `--derive-top K` would keep from the same search (re-derived from its
     checkpoint: the best, by the supernet's valid top-1, of the band's K most probable nets).
Then, for the first variant (the default), searches at the 25th, 50th and 75th percentile targets with
every seed of `--seeds`. Each search is its own run (no shared warmup); with `--family`, the targets of a
seed share one supernet instead (`proxyless search --target-latency A B C`: the weights trained once, an α
per target), and the wall time is the whole family's. Latency is predicted with a
torch-cpu table built here (`--batch`, one thread). Valid images are held out of CIFAR-10's training
images; the test split is never used (the table's accuracies are the only truth).

Resumable: every search is a run directory under --out, resumed when interrupted; finished parts are
read back. Writes benchmarks/results/search_quality.{json,md} and search_quality.png.

    python benchmarks/search_quality.py --data ~/data/cifar10-jpg \
        --truth ../shared/data/nas-bench-macro/nas-bench-macro_cifar10.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import proxyless as px  # noqa: E402
from common import RESULTS, environment, write_results  # noqa: E402
from proxyless.infra.checkpoint import load_checkpoint  # noqa: E402
from proxyless.infra.run_files import read_metrics  # noqa: E402
from proxyless.latency.predict import LatencyModel  # noqa: E402
from proxyless.search.pipeline import derive_rule, search_objective, supernet_of  # noqa: E402
from proxyless.search.quality import (  # noqa: E402
    load_ground_truth,
    per_layer_latency,
    ranking_report,
    regret_report,
    sample_archs,
)
from proxyless.search.scoring import supernet_scores  # noqa: E402

# name -> SearchConfig fields; "paper" is what proxyless did before this benchmark existed
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {"weights": "independent", "sampling": "uniform", "arch_lr": 1e-3, "arch_every": 5, "bn_batches": 0},
    "independent": {"weights": "independent", "sampling": "uniform"},
    "independent-fair": {"weights": "independent", "sampling": "fair"},
    "entangled": {"weights": "entangled", "sampling": "uniform"},
    "entangled-fair": {"weights": "entangled", "sampling": "fair"},
    "entangled-fair-two-sided": {"weights": "entangled", "sampling": "fair", "controller": "two-sided"},
    "entangled-fair-lr0.1": {"weights": "entangled", "sampling": "fair", "lr": 0.1},
    "entangled-fair-warmup1": {"weights": "entangled", "sampling": "fair", "warmup_epochs": 1},
    "entangled-fair-warmup5": {"weights": "entangled", "sampling": "fair", "warmup_epochs": 5},
    "entangled-fair-unit-residual": {"weights": "entangled", "sampling": "fair", "residual_init": 1.0},
    # every other warmup step the path with every weight (a one-path sandwich rule, `search.sampling`)
    "entangled-fair-largest": {"weights": "entangled", "sampling": "fair-largest"},
    # ... with the residual branches started at a quarter scale (`residual_init.py`: the supernet sees depth)
    "entangled-fair-largest-residual0.25": {"weights": "entangled", "sampling": "fair-largest", "residual_init": 0.25},
    # weight steps never take an identity: the supernet trained at full depth (does α stop over-keeping them?)
    "entangled-fair-full-depth": {"weights": "entangled", "sampling": "fair", "full_depth_weights": True},
    # an arch step after every weight step: 3x the α steps of the default budget's every 3rd, so z (the α
    # gradient's drift against its noise, `search.signal`) about 1.7x
    "entangled-fair-every1": {"weights": "entangled", "sampling": "fair", "arch_every": 1},
}
LATENCY_FIELDS = ("controller",)  # of a variant, these go to the LatencyTarget, the rest to the SearchConfig
PERCENTILES = (25, 50, 75)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    space = px.get_space("nas-bench-macro")
    truth = load_ground_truth(args.truth, space)
    out = Path(args.out)
    rounds = {"min_rounds": 2, "max_rounds": 2} if args.quick else {}
    # Each op timed alone, as when the committed results were measured (before timing in context became the
    # default): the targets and pools of finished runs stay the ones they were scored against.
    table = px.build_lut(space, out / "lut.json", config=px.MeasureConfig(batch=args.batch, threads=1, **rounds),
                         progress=False, method="isolated")
    torch.set_num_threads(args.threads)  # build_lut set one thread for the timings
    latency = per_layer_latency(LatencyModel(space, table))
    targets = percentile_targets(truth, latency)
    data = px.load_search_data(args.data, 32, valid_size=args.valid_size, limit_images=args.train_images,
                               progress=False)
    base = px.SearchConfig(epochs=args.epochs, warmup_epochs=args.warmup_epochs, batch_size=args.batch_size,
                           progress=False)
    rank_archs = sample_archs(space, args.rank_nets, seed=1)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report: dict[str, Any] = {"environment": environment(), "settings": settings, "targets_ms": targets,
                              "difficulty": difficulty(args.truth, truth, latency, targets), "variants": {},
                              "searches": []}
    for name in () if args.no_ablation else args.variants:
        config, controller = variant(base, name)
        run_dir = out / name / "p50_seed0"
        if args.report_only and not finished(run_dir, ranked=True):
            continue
        run = search(space, data, config, run_dir, out / "lut.json", targets[50], controller)
        report["variants"][name] = score_variant(run_dir, run, truth, latency, targets[50], rank_archs, data, args)
        report["variants"][name]["scored"] = scored_regret(run_dir, data, config.seed, truth, latency, targets[50],
                                                           args.derive_top)
        save(report, args, started)
    default, controller = variant(base, args.variants[0])
    for seed in args.seeds if args.family and not args.no_targets else ():
        run_dir = out / args.variants[0] / f"family_seed{seed}"
        if args.report_only and not finished(run_dir):
            continue
        chosen = {p: targets[p] for p in args.targets}
        run = search_family_run(space, data, replace(default, seed=seed), run_dir, out / "lut.json", chosen,
                                controller)
        for percentile, member in run["members"].items():
            regret = regret_report(member["indices"], truth, latency, targets[percentile])
            scored = scored_regret(run_dir, data, seed, truth, latency, targets[percentile], args.derive_top,
                                   member["label"])
            report["searches"].append({"target_percentile": percentile, "seed": seed, "search_s": run["search_s"],
                                       "family": list(chosen), **regret.to_dict(), "scored": scored})
            save(report, args, started)
    for percentile in () if args.no_targets or args.family else args.targets:
        for seed in args.seeds:
            run_dir = out / args.variants[0] / f"p{percentile}_seed{seed}"
            if args.report_only and not finished(run_dir):
                continue
            run = search(space, data, replace(default, seed=seed), run_dir, out / "lut.json", targets[percentile],
                         controller)
            regret = regret_report(run["indices"], truth, latency, targets[percentile])
            scored = scored_regret(run_dir, data, seed, truth, latency, targets[percentile], args.derive_top)
            report["searches"].append({"target_percentile": percentile, "seed": seed, "search_s": run["search_s"],
                                       **regret.to_dict(), "scored": scored})
            save(report, args, started)
    report["figure"] = figure(truth, latency, report, args)
    save(report, args, started)
    print(markdown(report))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample", help="CIFAR-10 ImageFolder root (the JPEG tree), or 'sample'")
    parser.add_argument("--truth", required=True, help="NAS-Bench-Macro's nas-bench-macro_cifar10.json")
    parser.add_argument("--out", default=str(RESULTS / "search_quality_runs"),
                        help="run directories (resumable; their small files are committed, checkpoints are not)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", help="result files' name (default search_quality[_quick]); a second lane running "
                        "other variants into the same --out writes its own, and a last run of all variants merges")
    parser.add_argument("--no-targets", action="store_true", help="the ablation only, no searches at three targets")
    parser.add_argument("--no-ablation", action="store_true", help="the searches at the targets only, not the "
                        "ablation at the median (e.g. a lane searching a family while another runs the ablation)")
    parser.add_argument("--report-only", action="store_true",
                        help="only read back finished searches (e.g. to merge the lanes' results), start none (a "
                        "finished search's scored derive is still computed once, from its checkpoint)")
    parser.add_argument("--variants", nargs="+", default=["entangled-fair", "paper", "entangled", "independent"],
                        choices=list(VARIANTS), help="supernet-training variants; the first is searched at every "
                        "target and seed")
    parser.add_argument("--train-images", type=int, default=5_000)
    parser.add_argument("--valid-size", type=float, default=0.1, help="part of CIFAR-10's training images held out")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--warmup-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rank-nets", type=int, default=100)
    parser.add_argument("--rank-images", type=int, default=500, help="valid images each subnet is scored on")
    parser.add_argument("--bn-batches", type=int, default=4, help="train batches of 100 that recalibrate BN per subnet")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--targets", type=int, nargs="+", default=list(PERCENTILES), choices=PERCENTILES,
                        help="which percentile targets to search at (e.g. one per lane)")
    parser.add_argument("--family", action="store_true", help="the targets of a seed share one supernet (one search "
                        "for all of --targets, an α per target) instead of a search each")
    parser.add_argument("--derive-top", type=int, default=10, help="K of the scored derive re-derived from each "
                        "search's checkpoint (see `search --derive-top`)")
    parser.add_argument("--batch", type=int, default=32, help="batch size of the latency table")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="a tiny run on the embedded sample to check the script")
    args = parser.parse_args()
    if args.no_targets and args.no_ablation:
        parser.error("--no-targets and --no-ablation leave nothing to run: drop one of them")
    args.name = args.name or ("search_quality_quick" if args.quick else "search_quality")
    if args.quick:
        args.data, args.train_images, args.epochs, args.warmup_epochs = "sample", 128, 2, 1
        args.batch_size, args.rank_nets, args.rank_images, args.seeds, args.batch = 32, 6, 64, [0], 1
        args.bn_batches, args.valid_size = 1, 0.02  # 100 valid images: scoring 500 took most of the quick run
        args.variants = args.variants[:1]
    return args


def percentile_targets(truth, latency) -> dict[int, float]:
    """The 25th, 50th and 75th percentile of the predicted latency of every net in the table."""
    values = torch.tensor([latency(indices) for indices in truth.all_indices()], dtype=torch.float64)
    return {p: float(torch.quantile(values, p / 100)) for p in PERCENTILES}


def difficulty(path: str, truth, latency, targets: dict[int, float], near: float = 0.2) -> dict[int, dict[str, Any]]:
    """How hard a regret of `near` points is at each target, from the table alone: how many nets of the pool
    (latency <= target + 5%) are within `near` of its best, and the regret of choosing by one of the
    table's training seeds when the other seeds' mean is the truth (the noise floor of the table itself)."""
    raw = json.loads(Path(path).read_text())
    runs = {code: record["test_acc"] for code, record in raw.items()
            if isinstance(record, dict) and "test_acc" in record}
    seeds = min((len(accuracies) for accuracies in runs.values()), default=0) if len(runs) == len(raw) else 0
    seeds = seeds if seeds >= 2 else 0  # a table without per-seed runs gives no noise floor
    rows = {}
    for percentile, target in targets.items():
        pool = [code for code, indices in zip(truth.codes, truth.all_indices()) if latency(indices) <= target * 1.05]
        mean = {code: truth.records[code].accuracy for code in pool}
        best = max(mean.values())
        held_out = []
        for seed in range(seeds):
            others = {code: sum(runs[code][:seed] + runs[code][seed + 1:]) / (seeds - 1) for code in pool}
            chosen = max(pool, key=lambda code: runs[code][seed])
            held_out.append(max(others.values()) - others[chosen])
        rows[percentile] = {"pool": len(pool), "near_best": sum(a >= best - near for a in mean.values()),
                            "near": near, "one_seed_regret": held_out}
    return rows


def finished(run_dir: Path, ranked: bool = False) -> bool:
    """Whether a search (and, with `ranked`, its ranking) is done and read back rather than run."""
    return (run_dir / "quality.json").is_file() and (not ranked or (run_dir / "ranking.json").is_file())


def variant(base, name: str) -> tuple[Any, str]:
    """The SearchConfig and the latency controller of variant `name`."""
    fields = dict(VARIANTS[name])
    controller = fields.pop("controller", "one-sided")
    return replace(base, **fields), controller


def search(space, data, config, run_dir: Path, lut: Path, target_ms: float,
           controller: str = "one-sided") -> dict[str, Any]:
    """One search (resumed if interrupted, read back if finished): its derived indices and wall time."""
    done = run_dir / "quality.json"
    if done.is_file():
        return json.loads(done.read_text())
    started = time.perf_counter()
    resume = (run_dir / "checkpoint.pt").is_file()
    found = px.search_arch(space, data, config, out=run_dir, resume=resume, overwrite=not resume,
                           latency=px.LatencyTarget(lut=str(lut), target_ms=round(target_ms, 3), measure=False,
                                                    controller=controller))
    indices = space.indices_of(found.arch)
    rows = read_metrics(run_dir)
    record = {"indices": indices, "derived_by": found.derived_by, "search_s": time.perf_counter() - started,
              "resumed": resume, "entropy": [row["mean_entropy"] for row in rows],
              "train_top1": [row["train_top1"] for row in rows], "config": asdict(config),
              "alpha_signal_z": rows[-1].get("alpha_signal_z")}
    px.infra.atomic.atomic_write_text(done, json.dumps(record, indent=2) + "\n")
    return record


def search_family_run(space, data, config, run_dir: Path, lut: Path, targets: dict[int, float],
                      controller: str = "one-sided") -> dict[str, Any]:
    """One search for every target of `targets` ({percentile: ms}) on one supernet (resumed if interrupted,
    read back if finished): each target's derived indices, and the family's wall time."""
    done = run_dir / "quality.json"
    if done.is_file():
        record = json.loads(done.read_text())
        return {**record, "members": {int(p): m for p, m in record["members"].items()}}
    started = time.perf_counter()
    resume = (run_dir / "checkpoint.pt").is_file()
    found = px.search_family(space, data, config, out=run_dir, resume=resume, overwrite=not resume,
                             targets=[px.LatencyTarget(lut=str(lut), target_ms=round(ms, 3), measure=False,
                                                       controller=controller) for ms in targets.values()])
    rows = read_metrics(run_dir)
    members = {p: {"label": result.run_dir.name, "derived_by": result.derived_by,
                   "indices": space.indices_of(result.arch),
                   "entropy": [row[f"mean_entropy@{result.run_dir.name}"] for row in rows],
                   "alpha_signal_z": rows[-1].get(f"alpha_signal_z@{result.run_dir.name}")}
               for p, result in zip(targets, found)}
    record = {"members": members, "search_s": time.perf_counter() - started, "resumed": resume,
              "train_top1": [row["train_top1"] for row in rows], "config": asdict(config)}
    px.infra.atomic.atomic_write_text(done, json.dumps(record, indent=2) + "\n")
    return record


def score_variant(run_dir: Path, run, truth, latency, target_ms, rank_archs, data, args) -> dict[str, Any]:
    """Ranking (with and without BN recalibration) and regret of one variant's median-target search."""
    cached = run_dir / "ranking.json"
    if cached.is_file():
        ranking = json.loads(cached.read_text())
    else:
        supernet = supernet_of(load_checkpoint(run_dir / "checkpoint.pt"), str(run_dir))
        costs = {truth.code_of(a): latency(a) for a in rank_archs}
        ranking = {}
        for label, train in (("recalibrated", data.train), ("running_stats", None)):
            scores = supernet_scores(supernet, rank_archs, truth, data.valid, train, images=args.rank_images,
                                     bn_batches=args.bn_batches, progress=False)
            ranking[label] = ranking_report(scores, truth, costs).to_dict()
        px.infra.atomic.atomic_write_text(cached, json.dumps(ranking, indent=2) + "\n")
    regret = regret_report(run["indices"], truth, latency, target_ms).to_dict()
    return {"ranking": ranking, "regret": regret, "search_s": run["search_s"], "entropy": run["entropy"],
            "train_top1": run["train_top1"], "derived_by": run["derived_by"]}


def scored_regret(run_dir: Path, data, seed: int, truth, latency, target_ms: float, k: int,
                  member: str | None = None) -> dict[str, Any] | None:
    """Regret of the net the search would keep with `derive_top=k`, re-derived from its checkpoint (cached in
    the run directory; of a family, target `member`'s); None without a checkpoint."""
    cached = run_dir / (member or "") / f"scored_top{k}.json"
    if not cached.is_file():
        if not (run_dir / "checkpoint.pt").is_file():
            return None
        supernet = supernet_of(load_checkpoint(run_dir / "checkpoint.pt"), str(run_dir), member)
        objective = search_objective(run_dir, supernet, member)
        started = time.perf_counter()
        indices, how = derive_rule(objective, k, data.valid, seed)(supernet)
        record = {"indices": indices, "derived_by": how, "derive_s": time.perf_counter() - started}
        px.infra.atomic.atomic_write_text(cached, json.dumps(record, indent=2) + "\n")
    record = json.loads(cached.read_text())
    return {**regret_report(record["indices"], truth, latency, target_ms).to_dict(), "derive_s": record["derive_s"],
            "k": k}


def save(report: dict[str, Any], args: argparse.Namespace, started: float) -> None:
    report["wall_s"] = time.perf_counter() - started
    write_results(args.name, report, markdown(report), args.results)


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [f"# Search quality on NAS-Bench-Macro ({s['train_images']} CIFAR-10 training images, {s['epochs']} "
             f"epochs incl. {s['warmup_epochs']} warmup, batch {s['batch_size']}; {s['rank_nets']} random nets "
             f"scored on {s['rank_images']} valid images)", "",
             "Targets (predicted, torch-cpu table built here): "
             + ", ".join(f"p{p} {t:.2f} ms" for p, t in report["targets_ms"].items()), "",
             "How hard: " + "; ".join(
                 f"p{p}: {d['near_best']} of {d['pool']} nets in budget within {d['near']} of the best, choosing by "
                 f"one training seed of the table scored by the others: regret "
                 + ("/".join(f"{r:.2f}" for r in d["one_seed_regret"]) or "– (one run per net)")
                 for p, d in report.get("difficulty", {}).items()), "",
             "## Ablation (search at the median target, seed 0)", "",
             "| variant | τ all (recal) | τ band (recal) | ρ all (recal) | τ all (running BN) | τ band (running BN) "
             "| α entropy per epoch | derived by | true acc | regret | percentile | search s "
             f"| top-{s.get('derive_top', '–')} scored: true acc | regret |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in report["variants"].items():
        rec, run = v["ranking"]["recalibrated"], v["ranking"]["running_stats"]
        g = v["regret"]
        lines.append(f"| {name} | {_f(rec['overall']['kendall_tau'])} | {_f(rec['same_cost']['kendall_tau'])} "
                     f"| {_f(rec['overall']['spearman_rho'])} | {_f(run['overall']['kendall_tau'])} "
                     f"| {_f(run['same_cost']['kendall_tau'])} | {' '.join(f'{e:.2f}' for e in v['entropy'])} "
                     f"| {v['derived_by'].split(' (')[0]} | {g['derived_accuracy']:.2f} | {g['regret']:.2f} "
                     f"| {g['percentile']:.2f} | {v['search_s']:.0f} | {_scored(v.get('scored'))} |")
    if report["searches"]:
        lines += ["", "## Regret at three targets (first variant)", "",
                  "| target | seed | predicted ms | in band | true acc | best in budget | regret | percentile "
                  "| band mean | largest that fits | search s | scored: true acc | regret |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in report["searches"]:
            lines.append(f"| p{r['target_percentile']} {r['target_ms']:.2f} ms | {r['seed']} "
                         f"| {r['derived_latency_ms']:.2f} | {r['derived_in_band']} | {r['derived_accuracy']:.2f} "
                         f"| {r['best_accuracy']:.2f} "
                         f"| {r['regret']:.2f} | {r['percentile']:.2f} | {_f(r['band_mean_accuracy'])} "
                         f"| {r['largest_accuracy']:.2f} | {r['search_s']:.0f} | {_scored(r.get('scored'))} |")
    families = [r for r in report["searches"] if r.get("family")]
    searches = ([v["search_s"] for v in report["variants"].values()]
                + [r["search_s"] for r in report["searches"] if not r.get("family")])
    if searches:  # a resumed search counts only its last part
        lines += ["", f"Each search: {min(searches) / 60:.1f} to {max(searches) / 60:.1f} min of wall time "
                  "(a search resumed after an interruption counts only its last part)."]
    if families:
        per_seed = {r["seed"]: (r["search_s"], len(r["family"])) for r in families}
        lines += ["", "The targets of each seed share one supernet (a family: the weights trained once, an α per "
                  "target); its search s is the whole family's: " + ", ".join(
                      f"seed {seed} {s_ / 60:.1f} min for {k} targets ({s_ / k / 60:.1f} min a target)"
                      for seed, (s_, k) in per_seed.items()) + "."]
    if not s.get("report_only"):
        lines += [f"Whole benchmark so far: {report['wall_s'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def _scored(scored: dict[str, Any] | None) -> str:
    return "– | –" if scored is None else f"{scored['derived_accuracy']:.2f} | {scored['regret']:.2f}"


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def figure(truth, latency, report: dict[str, Any], args: argparse.Namespace) -> str | None:
    """True accuracy vs predicted latency of every net, searched nets and baselines marked."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    nets = truth.all_indices()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([latency(a) for a in nets], [truth.accuracy(a) for a in nets], s=2, c="0.75", label="all nets")
    for r in report["searches"]:
        ax.scatter(r["derived_latency_ms"], r["derived_accuracy"], marker="*", s=120, c="C3",
                   label="searched" if r is report["searches"][0] else None)
        ax.scatter(r["best_latency_ms"], r["best_accuracy"], marker="^", s=40, c="C2",
                   label="best in budget" if r is report["searches"][0] else None)
        ax.scatter(r["largest_latency_ms"], r["largest_accuracy"], marker="s", s=30, c="C0",
                   label="largest that fits" if r is report["searches"][0] else None)
    for target in report["targets_ms"].values():
        ax.axvline(target, c="0.5", lw=0.8, ls="--")
    ax.set(xlabel="predicted latency (ms, torch-cpu table)", ylabel="true CIFAR-10 top-1 (%)", ylim=(85, 94),
           title="NAS-Bench-Macro: searched nets against every net of the space")
    ax.legend(loc="lower right")
    name = f"{args.name}.png"
    path = Path(args.results) / name
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return name


if __name__ == "__main__":
    main()
