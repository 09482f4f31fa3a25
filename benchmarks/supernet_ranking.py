"""On the real space, does the trained supernet prefer the searched nets, and does it rank trained nets right?

search_vs_baselines.py found the searched nets of proxyless-cifar behind random nets of the same latency
on real CIFAR-10 (20,000 images, 15 epochs). This asks where that comes from, with the supernet a search
trained on the same images (`--run`, a search's run directory with its checkpoint.pt; of a family, every
target):

1. at each target, `--pool` random nets of the space predicted inside the search's derive band, the nets
   α keeps (the band rule) and the `--top` most probable nets in the band (what `--derive-top` scores),
   all scored on the same `--images` held-out valid images in the supernet (running BN statistics, as
   `--derive-top` does): is the kept net among the supernet's favourites, or α's own pick against it?
2. the nets search_vs_baselines trained (`--trained`, its train/ folder: each net's arch.json and test
   top-1): does the supernet's score order them as training did?
3. what the groups are made of: how many layers are `zero` and the mean kernel size of the rest;
4. with `--train K`: the K best and K worst scored random nets at `--train-target`, and the net α keeps
   there (with `--spread N` also N random nets evenly spaced in score rank between them), trained from
   scratch with one recipe (`proxyless train`, one seed, two one-thread lanes) on the first
   `--train-per-class` images of each class of `--train-data`: does a better score mean a better net
   when trained alone? The trained nets are a small ground truth that another supernet can be scored on.
   `--repeat R` trains the R best and R worst of them (by test top-1) again with seed 1: is their spread
   the nets' own, or the seed's?

Scores are kept in WORK/scores_<run>_<images>.json and trainings in WORK/train/: rerunning continues.

    python benchmarks/supernet_ranking.py --run benchmarks/results/search_vs_baselines_runs/family_shared \\
        --trained benchmarks/results/search_vs_baselines_runs/train --train 3 --train-data ~/cifar10-jpg

Writes benchmarks/results/supernet_ranking.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import proxyless as px  # noqa: E402
from common import RESULTS, environment, spearman, write_results  # noqa: E402
from lanes import Job, run_jobs  # noqa: E402
from proxyless.arch import load_arch, save_arch  # noqa: E402
from proxyless.infra.atomic import atomic_write_text  # noqa: E402
from proxyless.infra.checkpoint import load_checkpoint  # noqa: E402
from proxyless.search.budget import most_probable_k_within  # noqa: E402
from proxyless.search.pipeline import search_objective, supernet_of  # noqa: E402
from proxyless.search.quality import subnet_accuracy  # noqa: E402

Indices = tuple[int, ...]
BN_BATCHES = 8  # batches of 100 training images that --recalibrate measures each net's BN statistics on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a search's run directory (with checkpoint.pt)")
    parser.add_argument("--trained", type=Path, help="search_vs_baselines' train/ folder: nets with a test top-1")
    parser.add_argument("--pool", type=int, default=40, help="random nets in the band at each target")
    parser.add_argument("--top", type=int, default=10, help="most probable nets in the band at each target")
    parser.add_argument("--images", type=int, default=2000, help="valid images every net is scored on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--recalibrate", action="store_true",
                        help="also score the trained nets with BN statistics recalibrated on training batches")
    parser.add_argument("--trained-only", action="store_true",
                        help="score only the --trained nets (no random pools per target): a quick second opinion")
    parser.add_argument("--train", type=int, default=0, metavar="K", help="train the K best and K worst scored")
    parser.add_argument("--spread", type=int, default=0, metavar="N",
                        help="with --train, also N random nets evenly spaced in score rank between the extremes")
    parser.add_argument("--repeat", type=int, default=0, metavar="R",
                        help="with --train, train the R best and R worst of them by test top-1 again with seed 1")
    parser.add_argument("--train-target", help="the target whose random nets are trained (default: the first)")
    parser.add_argument("--train-data", type=Path, help="ImageFolder root with train/ and test/ for --train")
    parser.add_argument("--train-per-class", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--lanes", type=int, default=2, help="trainings at a time (one thread each)")
    parser.add_argument("--work", type=Path, default=RESULTS / "supernet_ranking_runs")
    parser.add_argument("--name", default="supernet_ranking")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="a few nets on a few images, to check the script")
    args = parser.parse_args()
    if args.quick:
        args.pool, args.top, args.images, args.epochs, args.train_per_class = 3, 2, 20, 1, 10
        args.name += "_quick"
    if args.trained_only and (args.train or not args.trained):
        raise SystemExit("--trained-only scores the --trained nets; it needs --trained and cannot --train")
    if args.train and not args.train_data:
        raise SystemExit("--train needs --train-data, an ImageFolder root with train/ and test/")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    settings = json.loads((args.run / "config.json").read_text())
    command = settings["command"]
    state = load_checkpoint(args.run / "checkpoint.pt")
    members = [entry["label"] for entry in state.get("family", [])] or [None]
    supernet = supernet_of(state, str(args.run), members[0])
    space = supernet.space
    splits = px.load_splits(command["data"], space.input_size, valid_size=command["valid_size"],
                            seed=command["seed"], progress=False)
    picked = random.Random(args.seed).sample(range(len(splits.valid)), min(args.images, len(splits.valid)))
    batches = list(DataLoader(torch.utils.data.Subset(splits.valid, picked), batch_size=100))
    args.work.mkdir(parents=True, exist_ok=True)
    cached = args.work / f"scores_{args.run.name}_{args.images}.json"  # the weights do not depend on the target
    cache = json.loads(cached.read_text()) if cached.is_file() else {}

    def score(indices: Indices) -> float:
        key = ",".join(map(str, indices))
        if key not in cache:
            cache[key] = subnet_accuracy(supernet, list(indices), batches, memory_format=torch.channels_last)
            if len(cache) % 10 == 0:
                atomic_write_text(cached, json.dumps(cache) + "\n")
        return cache[key]

    targets = []
    for member in [] if args.trained_only else members:
        supernet = supernet_of(state, str(args.run), member)  # the same weights, this target's α
        objective = search_objective(args.run, supernet, member)
        label = member or f"{settings['latency']['target_ms']:g}ms"  # a single search: its one target
        targets.append(score_target(label, supernet, objective, args, score))
        print(f"{label}: kept net scores {targets[-1]['kept']['score']:.3f}, at the "
              f"{targets[-1]['kept']['percentile']:.0f}th percentile of {args.pool} random nets in the band",
              flush=True)
    trained = score_trained(args.trained, space, score) if args.trained else []
    atomic_write_text(cached, json.dumps(cache) + "\n")
    extremes = train_extremes(supernet, targets, args) if args.train else []
    if args.recalibrate:  # each trained net's score with BN statistics measured on its own path
        chosen = random.Random(args.seed + 1).sample(range(len(splits.train)), min(BN_BATCHES * 100, len(splits.train)))
        calibration = DataLoader(torch.utils.data.Subset(splits.train, chosen), batch_size=100)
        torch.manual_seed(args.seed)  # the training transform's random crops and flips: the same on a rerun
        bn_batches = [images for images, _ in calibration]
        for row in trained + extremes:
            row["score_recalibrated"] = subnet_accuracy(supernet, row["indices"], batches, bn_batches,
                                                        memory_format=torch.channels_last)
    given = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    report = {"settings": {**given, "search": settings["search"], "data": settings["data"],
                           "checkpoint_epoch": state["epoch"]},
              "targets": targets, "trained": trained, "ranking": trained_ranking(trained),
              "extremes": extremes, "extremes_ranking": trained_ranking(extremes),
              "wall_s": time.perf_counter() - started, "environment": environment()}
    write_results(args.name, report, markdown(report), args.results)


def score_target(member, supernet, objective, args, score) -> dict:
    """Supernet scores at one target: the band rule's net, the most probable in the band, random nets in it."""
    low, high = objective.derive_band()
    latency = objective.model.of_indices
    kept = tuple(objective.derive(supernet)[0])
    probable = [tuple(i) for i in most_probable_k_within(objective.model, supernet.probs(), low, high, args.top)]
    pool = random_in_band(supernet, latency, low, high, args.pool, args.seed)
    pool_scores = [score(i) for i in pool]
    probable_scores = [score(i) for i in probable]
    kept_score = score(kept)
    best = max(range(len(pool)), key=lambda i: pool_scores[i])
    return {"target": member, "band_ms": [low, high],
            "kept": {**describe(supernet, kept, latency), "score": kept_score,
                     "percentile": percentile(kept_score, pool_scores)},
            "probable": {"scores": probable_scores, "best": describe(supernet, probable[probable_scores.index(
                max(probable_scores))], latency), "makeup": makeup(supernet, probable)},
            "random": {"nets": [list(i) for i in pool], "scores": pool_scores,
                       "best": {**describe(supernet, pool[best], latency), "score": pool_scores[best]},
                       "makeup": makeup(supernet, pool)},
            "kept_indices": list(kept), "kept_makeup": makeup(supernet, [kept])}


def train_extremes(supernet, targets: list[dict], args: argparse.Namespace) -> list[dict]:
    """Train the `args.train` best and worst scored random nets of one target and its kept net; each with
    its group, score and test top-1."""
    from search_vs_baselines import link_subset  # the same fixed subset rule as the comparison

    target = next((t for t in targets if t["target"] == args.train_target or args.train_target is None), None)
    if target is None:
        raise SystemExit(f"--train-target {args.train_target} is not a target of the run: "
                         f"{', '.join(str(t['target']) for t in targets)}")
    pool = sorted(zip(target["random"]["scores"], target["random"]["nets"]), key=lambda pair: -pair[0])
    chosen = [("best", i, s, n) for i, (s, n) in enumerate(pool[:args.train])]
    chosen += [("worst", i, s, n) for i, (s, n) in enumerate(pool[-args.train:])]
    middle = range(args.train, len(pool) - args.train)  # score ranks between the extremes
    for j in range(args.spread):  # evenly spaced: a truth for rank correlation, not only the two ends
        rank = middle[round((j + 0.5) * len(middle) / args.spread - 0.5)]
        chosen.append(("mid", rank, *pool[rank]))
    chosen.append(("kept", 0, target["kept"]["score"], target["kept_indices"]))
    link_subset(args.train_data, args.work / "data", args.train_per_class, 10 if args.quick else None)
    jobs, rows = [], []
    for group, rank, score, indices in chosen:
        name = f"{target['target']}_{group}{rank}"
        arch = supernet.arch_of(indices, name)
        save_arch(arch, args.work / "archs" / f"{name}.json")
        job, out = train_job(name, args, seed=0)
        jobs.append(job)
        rows.append({"name": name, "group": group, "score": score, "indices": list(indices),
                     "ops": arch.op_strings(), "out": out})
    run_jobs(jobs, lanes=args.lanes, records=args.work / "jobs")
    for row in rows:
        result = json.loads((row.pop("out") / "result.json").read_text())
        row["test_top1"] = [result["test_top1"]]
        row["mean_top1"] = result["test_top1"]
    if args.repeat:  # is the spread of one seed the nets' or the seed's? The extremes of it, trained again
        ranked = sorted(rows, key=lambda row: row["test_top1"][0])
        again = ranked[-args.repeat:] + ranked[:args.repeat]
        jobs = [train_job(row["name"], args, seed=1) for row in again]
        run_jobs([job for job, _ in jobs], lanes=args.lanes, records=args.work / "jobs")
        for row, (_, out) in zip(again, jobs):
            row["test_top1"].append(json.loads((out / "result.json").read_text())["test_top1"])
            row["mean_top1"] = statistics.fmean(row["test_top1"])
    return rows


def train_job(name: str, args: argparse.Namespace, seed: int) -> tuple[Job, Path]:
    """The training of net `name` (its arch in WORK/archs) with `seed`, and its run folder."""
    out = args.work / "train" / (name if seed == 0 else f"{name}_seed{seed}")
    flags = ["train", "--arch", str(args.work / "archs" / f"{name}.json"), "--data", str(args.work / "data"),
             "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
             "--seed", str(seed)]
    return Job(f"train_{out.name}", flags, out, ["train", "--resume", str(out), "--no-progress"]), out


def random_in_band(supernet, latency, low: float, high: float, count: int, seed: int) -> list[Indices]:
    """`count` distinct nets drawn uniformly (every layer's op independently), kept when predicted in [low, high]."""
    rng, sizes, found = random.Random(seed), [len(m.specs) for m in supernet.mixed_ops()], {}
    for _ in range(2_000_000):
        indices = tuple(rng.randrange(size) for size in sizes)
        if low <= latency(list(indices)) <= high:
            found[indices] = None
            if len(found) == count:
                return list(found)
    raise SystemExit(f"found only {len(found)} random nets predicted in {low:.1f}-{high:.1f} ms; ask for fewer")


def describe(supernet, indices: Indices, latency) -> dict:
    return {"ops": supernet.arch_of(list(indices)).op_strings(), "predicted_ms": latency(list(indices))}


def makeup(supernet, nets: list[Indices]) -> dict:
    """Mean number of `zero` layers and mean kernel size of the other layers over `nets`."""
    zeros, kernels = [], []
    for indices in nets:
        ops = supernet.arch_of(list(indices)).op_strings()
        zeros.append(sum(op == "zero" for op in ops))
        kernels.extend(int(op.split("_k")[1].split("_")[0]) for op in ops if op != "zero")
    return {"zeros": statistics.fmean(zeros), "kernel": statistics.fmean(kernels)}


def percentile(value: float, pool: list[float]) -> float:
    """Share of `pool` below `value`, ties counted half, in percent."""
    return 100 * (sum(v < value for v in pool) + 0.5 * sum(v == value for v in pool)) / len(pool)


def score_trained(folder: Path, space, score) -> list[dict]:
    """Each net of the space search_vs_baselines trained: its supernet score and test top-1 (mean over seeds)."""
    nets: dict[str, dict] = {}
    for run in sorted(folder.iterdir()):
        result = run / "result.json"
        if not result.is_file():
            continue
        arch = load_arch(run / "arch.json")
        if arch.space.to_dict() != space.to_dict():
            continue  # MobileNetV2: not a net of the searched space
        name = run.name.rsplit("_seed", 1)[0]
        indices = space.indices_of(arch)
        entry = nets.setdefault(name, {"name": name, "indices": indices, "ops": arch.op_strings(),
                                       "test_top1": []})
        entry["test_top1"].append(json.loads(result.read_text())["test_top1"])
    for entry in nets.values():
        entry["score"] = score(entry["indices"])
        entry["mean_top1"] = statistics.fmean(entry["test_top1"])
    return list(nets.values())


def trained_ranking(trained: list[dict]) -> dict:
    """Spearman ρ of each score (running BN, and recalibrated where measured) against the test top-1."""
    ranking = {"count": len(trained)}
    for key in ("score", "score_recalibrated"):
        if len(trained) < 3 or any(key not in t for t in trained):
            continue
        ranking["spearman" if key == "score" else "spearman_recalibrated"] = \
            spearman([t[key] for t in trained], [t["mean_top1"] for t in trained])
    return ranking


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [f"# The trained supernet's view of the band (run {Path(s['run']).name})", "",
             f"Supernet: {s['data']}; search {s['search']['epochs']} epochs ({s['search']['warmup_epochs']} warmup)"
             f"{checkpoint_note(s)}. "
             f"Every net scored on the same {s['images']} held-out valid images, running BN statistics. "
             f"Random nets: every layer's op drawn uniformly, kept when predicted inside the derive band.", ""]
    if report["targets"]:
        lines += ["| target | kept (band rule): score | its percentile among random nets | random: median score "
                  "(min–max) | top-probable: best score | zeros kept / top-probable / random | "
                  "mean kernel kept / top-probable / random |",
                  "|---|---|---|---|---|---|---|"]
    for t in report["targets"]:
        r, p = t["random"], t["probable"]
        lines.append(
            f"| {t['target']} | {t['kept']['score']:.3f} | {t['kept']['percentile']:.0f} | "
            f"{statistics.median(r['scores']):.3f} ({min(r['scores']):.3f}–{max(r['scores']):.3f}) | "
            f"{max(p['scores']):.3f} | "
            f"{t['kept_makeup']['zeros']:.0f} / {p['makeup']['zeros']:.1f} / {r['makeup']['zeros']:.1f} | "
            f"{t['kept_makeup']['kernel']:.1f} / {p['makeup']['kernel']:.1f} / {r['makeup']['kernel']:.1f} |")
    if report["trained"]:
        lines += ["", f"## The nets trained in {Path(s['trained']).parent.name}/{Path(s['trained']).name} "
                  "(test top-1 after their recipe)", ""]
        lines += trained_table(report["trained"], report["ranking"], group=False)
    if report["extremes"]:
        where = s["train_target"] or "the first target"
        lines += ["", f"## Trained alone: random nets at {where} by score (best, worst, between) and the kept net", "",
                  f"Each net trained from scratch (seed 0; with --repeat, some also seed 1): the first "
                  f"{s['train_per_class']} training images of each class, {s['epochs']} epochs, batch "
                  f"{s['batch_size']}, lr {s['lr']}; test top-1 on the test split.",
                  ""]
        lines += trained_table(report["extremes"], report["extremes_ranking"], group=True)
        groups: dict[str, list[dict]] = {}
        for row in report["extremes"]:
            groups.setdefault(row["group"], []).append(row)
        lines += ["", "Group means: " + "; ".join(
            f"{group} {100 * statistics.fmean(r['mean_top1'] for r in rows):.1f}% (score "
            f"{statistics.fmean(r['score'] for r in rows):.3f})" for group, rows in groups.items()) + "."]
        lines += seed_check(report["extremes"])
    lines += ["", f"Wall time {report['wall_s']:.0f} s. Reproduce: `python benchmarks/supernet_ranking.py "
              f"--run RUN_DIR --trained TRAIN_DIR --train K --train-data DIR`"]
    return "\n".join(lines) + "\n"


def checkpoint_note(settings: dict) -> str:
    """', scored after epoch N' when the checkpoint is a snapshot taken before the search's last epoch."""
    epoch = settings.get("checkpoint_epoch")  # reports written before it was recorded: the finished run
    return "" if epoch is None or epoch >= settings["search"]["epochs"] else f", scored after epoch {epoch}"


def seed_check(rows: list[dict]) -> list[str]:
    """With --repeat: the gap between the nets that trained best and worst with seed 0, and the same nets'
    gap with seed 1 (a gap that was the seed's, not the nets', closes)."""
    again = sorted((r for r in rows if len(r["test_top1"]) > 1), key=lambda r: -r["test_top1"][0])
    if not again:
        return []
    top, bottom = again[:len(again) // 2], again[len(again) // 2:]

    def gap(seed: int) -> float:
        return 100 * (statistics.fmean(r["test_top1"][seed] for r in top)
                      - statistics.fmean(r["test_top1"][seed] for r in bottom))
    change = statistics.fmean(abs(r["test_top1"][1] - r["test_top1"][0]) for r in again)
    names = ", ".join(r["name"] for r in again)
    return ["", f"Seed check: the {len(top)} best and {len(bottom)} worst of seed 0 ({names}) trained again with "
            f"seed 1. Best minus worst: {gap(0):.1f} points with seed 0, **{gap(1):.1f} with seed 1**; a net's two "
            f"seeds differ by {100 * change:.1f} points on average."]


def trained_table(rows: list[dict], ranking: dict, group: bool) -> list[str]:
    """Trained nets by score, with the recalibrated score where measured, and the rank correlations."""
    recalibrated = all("score_recalibrated" in r for r in rows)
    head = ["net"] + ["group"] * group + ["supernet score"] + ["score, BN recalibrated"] * recalibrated
    lines = ["| " + " | ".join(head + ["zero layers", "test top-1 % (seeds)"]) + " |",
             "|" + "---|" * (len(head) + 2)]
    for r in sorted(rows, key=lambda r: -r["score"]):
        cells = [r["name"]] + [r.get("group", "")] * group + [f"{r['score']:.3f}"]
        cells += [f"{r['score_recalibrated']:.3f}"] if recalibrated else []
        seeds = ", ".join(f"{100 * v:.1f}" for v in r["test_top1"])
        cells += [str(sum(op == "zero" for op in r["ops"])), f"{100 * r['mean_top1']:.1f} ({seeds})"]
        lines.append("| " + " | ".join(cells) + " |")
    rhos = [f"{label} {ranking[key]:.2f}" if ranking.get(key) is not None else f"{label} –"
            for key, label in (("spearman", "running BN"), ("spearman_recalibrated", "recalibrated BN"))
            if key in ranking]
    return lines + ["", f"Spearman ρ (score vs test top-1) over {ranking['count']} nets: " + ", ".join(rhos or ["–"])]


if __name__ == "__main__":
    main()
