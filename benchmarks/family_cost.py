"""What does a family of K latency targets cost against K separate searches? And does each of its nets
land on its target as measured?

With the same space, data, table and settings:
  - one `proxyless search --target-latency T1 .. TK` (a family: the weights trained once, an α per target);
  - K `proxyless search --target-latency Ti`, one per target;
run as jobs on `--lanes` one-thread lanes (`benchmarks/lanes.py`: each job sees one core and a neighbour,
except whatever runs last, alone). Then, with nothing else running, each net is derived again with
`--measured-derive`, as a user deploying it would: timed on this machine on the table's backend, batch and
threads, and derived again with the table corrected by that measurement when it is more than 2.5% off.
Reported: wall time and peak memory of the family against the K searches, and every net's measured
latency against its target.

    python benchmarks/family_cost.py --data ~/data/cifar10-jpg --limit-images 5000 --targets 30 46 68

Rerunning the same command continues: a finished search is read back, an interrupted one resumed.
Writes benchmarks/results/family_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, SEARCH_LUT, environment, write_results  # noqa: E402
from lanes import Job, baseline_rss_mb, run_jobs  # noqa: E402

TOLERANCE = 0.025  # issue 17: each net within ±2.5% of its target, measured


def label(target: float) -> str:
    return f"{target:g}ms"


def jobs_for(work: Path, args: argparse.Namespace) -> list[Job]:
    """The family first, then a search per target (with two lanes the family runs beside them)."""
    common = ["search", "--data", args.data, "--space", args.space, "--lut", str(args.lut), "--epochs",
              str(args.epochs), "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--no-measure"]
    if args.limit_images:
        common += ["--limit-images", str(args.limit_images)]
    targets = [label(t) for t in args.targets]
    family = Job("family", common + ["--target-latency", *targets], work / "family",
                 ["search", "--resume", str(work / "family"), "--no-progress"])
    singles = [Job(f"single_{t}", common + ["--target-latency", t], work / f"single_{t}",
                   ["search", "--resume", str(work / f"single_{t}"), "--no-progress"]) for t in targets]
    return [singles[0], family, *singles[1:]]


def measured(run: Path, member: str | None) -> dict:
    """Derive `run` (a family's target `member`) again with --measured-derive; its latency.json after."""
    where = run / (member or "")
    done = where / "measured.json"
    if not done.is_file():
        command = [sys.executable, "-m", "proxyless", "derive", str(run), "--measured-derive"]
        subprocess.run(command + (["--target", member] if member else []), check=True, capture_output=True)
        done.write_text((where / "latency.json").read_text())
    report = json.loads(done.read_text())
    return {"measured_ms": report["measured_ms"], "predicted_ms": report["predicted_ms"],
            "measured_error": report["measured_ms"] / report["target_ms"] - 1, "derived_by": report["derived_by"],
            "nets_timed": len(report.get("measured_derive", [])), "arch": json.loads((where / "arch.json").read_text())}


def main() -> None:
    args = parse_args()
    work = Path(args.work)
    records = run_jobs(jobs_for(work, args), args.lanes, work / "jobs")
    base = baseline_rss_mb()
    nets = []
    for target in args.targets:
        for kind, run, member in (("family", work / "family", label(target)),
                                  ("single", work / f"single_{label(target)}", None)):
            row = measured(run, member)
            nets.append({"target_ms": target, "kind": kind, **{k: v for k, v in row.items() if k != "arch"},
                         "ops": row["arch"]["ops"], "within": abs(row["measured_error"]) <= TOLERANCE})
    family = records["family"]
    singles = [records[f"single_{label(t)}"] for t in args.targets]
    singles_s = sum(r["wall_s"] for r in singles)
    report = {
        "environment": environment(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "family": family, "singles": dict(zip((label(t) for t in args.targets), singles)),
        "cost_ratio": family["wall_s"] / singles_s,
        "per_search_ratio": family["wall_s"] / (singles_s / len(singles)),
        "rss_ratio_above_imports": (family["max_rss_mb"] - base) / (max(r["max_rss_mb"] for r in singles) - base),
        "import_rss_mb": base, "nets": nets,
    }
    write_results(args.name, report, markdown(report), args.results)
    print(markdown(report))


def markdown(report: dict) -> str:
    s, family = report["settings"], report["family"]
    k = len(report["singles"])
    lines = [f"# A family of {k} latency targets against {k} separate searches ({s['space']}, {s['epochs']} epochs, "
             f"batch {s['batch_size']}, data {Path(s['data']).name}"
             + (f", {s['limit_images']} training images" if s.get("limit_images") else "") + ")", "",
             f"Jobs on {s['lanes']} one-thread lanes, each beside a neighbour except the last; peak memory is the "
             f"process's RSS ({report['import_rss_mb']:.0f} MB of it is importing torch and proxyless).", "",
             "| run | wall s | peak RSS MB |", "|---|---|---|",
             f"| family ({', '.join(report['singles'])}) | {family['wall_s']:.0f} | {family['max_rss_mb']:.0f} |"]
    for name, record in report["singles"].items():
        lines.append(f"| single {name} | {record['wall_s']:.0f} | {record['max_rss_mb']:.0f} |")
    lines += ["", f"The family took **{report['cost_ratio']:.2f} ×** the wall time of the {k} searches together "
              f"({report['per_search_ratio']:.2f} × one of them on average); peak memory above the imports "
              f"{report['rss_ratio_above_imports']:.2f} × the largest search's.", "",
              "## Each net measured (derived again with --measured-derive, nothing else running)", "",
              "| target ms | from | measured ms | off target | within ±2.5% | predicted ms | nets timed | derived by |",
              "|---|---|---|---|---|---|---|---|"]
    for n in report["nets"]:
        lines.append(f"| {n['target_ms']:g} | {n['kind']} | {n['measured_ms']:.2f} | {n['measured_error']:+.1%} "
                     f"| {'yes' if n['within'] else 'NO'} | {n['predicted_ms']:.2f} | {n['nets_timed']} "
                     f"| {n['derived_by'].split(' (')[0]} |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample", help="an ImageFolder tree, a CIFAR-10 folder, or 'sample'")
    parser.add_argument("--limit-images", type=int, help="training images used (default: all)")
    parser.add_argument("--space", default="proxyless-cifar")
    parser.add_argument("--lut", type=Path, default=SEARCH_LUT, help="latency table of this machine")
    parser.add_argument("--targets", type=float, nargs="+", default=[30.0, 46.0, 68.0], help="ms")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lanes", type=int, default=2, help="jobs at a time (one thread each)")
    parser.add_argument("--work", default=str(RESULTS / "family_cost_runs"), help="run directories (resumable)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="family_cost")
    return parser.parse_args()


if __name__ == "__main__":
    main()
