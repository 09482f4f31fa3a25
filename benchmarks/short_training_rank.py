"""Does a short training of each net alone rank nets of one latency better than the supernet does?

supernet_ranking.py trained nets of one latency band from scratch (its small ground truth: each net's
test top-1 after the full recipe) and found the supernet's scores barely ordering them. This asks how
well a few epochs of training each net alone would do, as a way to choose among a search's candidates:

1. in the ground truth's own runs (free): each epoch's train top-1, train loss and test top-1 against
   the final test top-1 (mean over seeds). Those epochs are part of the runs they predict (same seed,
   the full run's lr schedule), so this is an upper bound for a short run;
2. short runs (`--epochs`, their own cosine schedule, another `--seed`) of every net on the same
   images, with `proxyless train` in one-thread lanes: their last-epoch train top-1 and train loss,
   which a derive could use without touching the test split, and their test top-1 for reference.

    python benchmarks/short_training_rank.py --trained benchmarks/results/supernet_ranking_runs/train \
        --data benchmarks/results/supernet_ranking_runs/data --epochs 3 --lanes 1

Trainings are kept under --work (resumable: a rerun continues). Writes
benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment, spearman, write_results  # noqa: E402
from lanes import Job, run_jobs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trained", type=Path, required=True,
                        help="run folders of nets trained with one recipe (arch.json, metrics.csv, result.json); "
                             "a name ending _seedN is another seed of the same net")
    parser.add_argument("--data", type=Path, required=True, help="the ImageFolder root they were trained on")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each short run")
    parser.add_argument("--seed", type=int, default=2, help="seed of the short runs (not one of the truth's)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--lanes", type=int, default=1, help="trainings at a time (one thread each)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "short_training_runs")
    parser.add_argument("--name", default="short_training_rank")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    nets = truth_of(args.trained)
    if len(nets) < 3:
        raise SystemExit(f"{args.trained}: {len(nets)} trained nets found; a rank correlation needs at least 3")
    final = [net["mean_top1"] for net in nets]
    in_run = [{"epoch": epoch + 1, **{key: spearman([net["first_run"][epoch][key] for net in nets], final)
                                      for key in ("train_top1", "neg_train_loss", "test_top1")}}
              for epoch in range(min(len(net["first_run"]) for net in nets) - 1)]

    jobs = [short_job(net, args) for net in nets]
    run_jobs(jobs, lanes=args.lanes, records=args.work / "jobs")
    for net, job in zip(nets, jobs):
        epochs = read_metrics(job.out / "metrics.csv")
        net["short"] = {**epochs[-1], "seconds": sum(row["epoch_seconds"] for row in epochs)}
    short = {key: spearman([net["short"][key] for net in nets], final)
             for key in ("train_top1", "neg_train_loss", "test_top1")}
    # the same images and nets: a short run costs its share of the full run's epochs (the wall times were
    # measured in different sessions and beside different neighbours, so they are kept but not compared)
    cost = args.epochs / statistics.fmean(len(net["first_run"]) for net in nets)
    report = {"settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
              "nets": nets, "in_run": in_run, "short": short, "short_cost_of_full": cost,
              "wall_s": time.perf_counter() - started, "environment": environment()}
    markdown = to_markdown(report)
    print(markdown)
    write_results(args.name, report, markdown, args.results)


def read_metrics(path: Path) -> list[dict]:
    """A `proxyless train` metrics.csv as numbers, with -train_loss (higher is better, like the rest)."""
    rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(path.open())]
    for row in rows:
        row["neg_train_loss"] = -row["train_loss"]
    return rows


def truth_of(folder: Path) -> list[dict]:
    """Each net in `folder`: its arch, its test top-1 (mean over seeds), the epochs of its first run."""
    nets: dict[str, dict] = {}
    for run in sorted(folder.iterdir()):
        if not (run / "result.json").is_file():
            continue
        name = run.name.rsplit("_seed", 1)[0]
        metrics = read_metrics(run / "metrics.csv")
        net = nets.setdefault(name, {"name": name, "arch": str(run / "arch.json"), "test_top1": [],
                                     "first_run": metrics, "seconds": sum(r["epoch_seconds"] for r in metrics)})
        net["test_top1"].append(json.loads((run / "result.json").read_text())["test_top1"])
    for net in nets.values():
        net["mean_top1"] = statistics.fmean(net["test_top1"])
    return list(nets.values())


def short_job(net: dict, args: argparse.Namespace) -> Job:
    out = args.work / "train" / f"{net['name']}_e{args.epochs}_seed{args.seed}"
    flags = ["train", "--arch", net["arch"], "--data", str(args.data), "--epochs", str(args.epochs),
             "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed)]
    return Job(f"train_{out.name}", flags, out, ["train", "--resume", str(out), "--no-progress"])


def to_markdown(report: dict) -> str:
    s, nets = report["settings"], report["nets"]

    def f(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    runs = sum(len(net["test_top1"]) for net in nets)
    lines = ["# Short training of each net alone as a ranking", "",
             f"Ground truth: {len(nets)} nets in `{s['trained']}` ({runs} trainings; test top-1 averaged over "
             f"seeds). Spearman ρ of each measure against it.", "",
             "## Within the truth's own runs (the first seed): epoch k against the end", "",
             "| epoch | train top-1 | train loss | test top-1 |", "|---|---|---|---|"]
    lines += [f"| {row['epoch']} | {f(row['train_top1'])} | {f(row['neg_train_loss'])} | {f(row['test_top1'])} |"
              for row in report["in_run"]]
    short = report["short"]
    lines += ["", f"## Short runs: {s['epochs']} epochs each (own cosine schedule), seed {s['seed']}", "",
              "| net | truth test top-1 % | short: train top-1 % | train loss | test top-1 % |",
              "|---|---|---|---|---|"]
    for net in sorted(nets, key=lambda n: -n["mean_top1"]):
        lines.append(f"| {net['name']} | {100 * net['mean_top1']:.1f} | {100 * net['short']['train_top1']:.1f} | "
                     f"{net['short']['train_loss']:.3f} | {100 * net['short']['test_top1']:.1f} |")
    lines += ["", f"ρ against the truth: short train top-1 **{f(short['train_top1'])}**, short train loss "
              f"**{f(short['neg_train_loss'])}**, short test top-1 {f(short['test_top1'])} (the test split: for "
              "reference, not for choosing).",
              f"A short run costs {report['short_cost_of_full']:.2f}× its net's full training ({s['epochs']} "
              "epochs of the same images).", "",
              f"Wall time {report['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
