"""Does a latency table built here predict whole networks measured here?

For one (space, backend, batch, threads): build the table (`proxyless lut build`), then calibrate it on
`--calibrate` random architectures and validate it on `--samples` others (`proxyless lut validate`),
all right after one another so that the drift of a shared machine is small between them.

    python benchmarks/latency_validation.py --space proxyless-cifar --backend torch-cpu --batch 32
    python benchmarks/latency_validation.py --space proxyless-imagenet --backend onnxruntime --batch 1

Writes benchmarks/results/latency_<space>_<backend>_b<batch>[_t<threads>].{json,md,png} (no suffix for one
thread) and the table itself (lut_<...>.json, calibration in its header). Judged by two bars: issue 4's
(≥ 90% of predictions within ±10%, rank correlation ≥ 0.9) and issue 16's (≥ 95% within ±5%, all within
±10%, rank correlation ≥ 0.95). The load average before and after is recorded: what else ran.

    python benchmarks/latency_validation.py --all

runs issue 16's eight rows one after another in one run (`ISSUE_16_ROWS`: PyTorch at one and two threads
on three spaces, ONNX Runtime at two threads on two) and adds latency_validation_all.{json,md}, one line
a row with its measurement ceiling, rewritten after every row so that a run cut short keeps its rows.
`--all --resume` keeps the rows that file already has (measured with the same settings) and runs the others;
each row says which run measured it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment, write_results  # noqa: E402
from proxyless.latency.context import METHODS  # noqa: E402
from proxyless.latency.measure import MeasureConfig, build_lut  # noqa: E402
from proxyless.latency.validate import NETWORK_MEASURE, plot_scatter, save_calibration, validate_lut  # noqa: E402
from proxyless.space import get_space  # noqa: E402

# issue 16's rows, (space, backend, batch, threads): PyTorch at one thread and at the default two (this
# machine's cores), ONNX Runtime at the default two. The rows that missed the bar in their last run come
# first (2026-12-01: 32 px at two threads on both backends, 224 px PyTorch at two), so that a run cut short
# by the end of a session has measured the doubtful ones.
ISSUE_16_ROWS = (
    ("proxyless-cifar", "torch-cpu", 32, 2), ("proxyless-cifar", "onnxruntime", 32, 2),
    ("proxyless-imagenet", "torch-cpu", 1, 2), ("proxyless-imagenet", "onnxruntime", 1, 2),
    ("proxyless-imagenet", "torch-cpu", 1, 1), ("proxyless-cifar", "torch-cpu", 32, 1),
    ("nas-bench-macro", "torch-cpu", 32, 1), ("nas-bench-macro", "torch-cpu", 32, 2),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="proxyless-cifar")
    parser.add_argument("--backend", default="torch-cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--all", action="store_true",
                        help="issue 16's eight rows in one run (ignores --space, --backend, --batch, --threads)")
    parser.add_argument("--resume", action="store_true",
                        help="with --all: keep the rows latency_validation_all.json has, run only the others")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--calibrate", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15, help="most rounds per op of the table")
    parser.add_argument("--net-rounds", type=int, default=40, help="most rounds per validation network")
    parser.add_argument("--net-rel-error", type=float, default=0.01,
                        help="a validation network is timed until its mean's standard error is under this share "
                             "of it: at 1%% a perfect table lands within ±5%% of >99.9%% of the means; at the 2.7%% "
                             "of 2026-12-01's 32 px two-thread row, of 90%% (its measurement ceiling)")
    parser.add_argument("--method", default="auto", choices=METHODS,
                        help="how the table times its ops (auto: in context where it can; a non-auto choice is "
                             "added to the result's name)")
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the script (minutes)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write (default: benchmarks/results)")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.calibrate, args.rounds, args.net_rounds = 4, 3, 2, 2
    if not args.all:
        validate_row(args)
        return
    lines = kept_rows(args) if args.resume else []
    run = environment()["date"]
    for space, backend, batch, threads in ISSUE_16_ROWS:
        if any(row_key(line) == (space, backend, batch, threads) for line in lines):
            continue
        line = validate_row(argparse.Namespace(**{**vars(args), "space": space, "backend": backend,
                                                  "batch": batch, "threads": threads}))
        lines.append({**line, "run": run})
        write_all(lines, args)


# the settings a kept row must share with the run that resumes it
PROTOCOL = ("samples", "calibrate", "rounds", "net_rounds", "net_rel_error", "method", "quick")


def row_key(line: dict) -> tuple:
    return line["space"], line["backend"], line["batch"], line["threads"]


def summary_name(args: argparse.Namespace) -> str:
    """latency_validation_all, the `--all` run's summary ("_quick" added for a quick run)."""
    return "latency_validation_all" + ("_quick" if args.quick else "")


def kept_rows(args: argparse.Namespace) -> list[dict]:
    """The rows of an earlier `--all` run to keep, in issue 16's order; exits with a one-line error when that
    run used other settings."""
    path = args.results / f"{summary_name(args)}.json"
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    differ = [name for name in PROTOCOL if earlier["args"].get(name) != getattr(args, name)]
    if differ:
        sys.exit(f"error: {path} was measured with other {', '.join(differ)}; drop --resume to measure all rows "
                 "again")
    order = {row: index for index, row in enumerate(ISSUE_16_ROWS)}
    return sorted((line for line in earlier["rows"] if row_key(line) in order),
                  key=lambda line: order[row_key(line)])


def validate_row(args: argparse.Namespace) -> dict:
    """Build, calibrate and validate one (space, backend, batch, threads) row; write its results and return
    its line of the summary."""
    tag = (f"{args.space}_{args.backend}_b{args.batch}" + (f"_t{args.threads}" if args.threads != 1 else "")
           + (f"_{args.method}" if args.method != "auto" else ""))
    name = f"latency_{tag}" + ("_quick" if args.quick else "")
    space = get_space(args.space)
    load_before = os.getloadavg()
    start = time.perf_counter()
    # 1. the table, as `proxyless lut build` measures it
    lut_path = args.results / f"lut_{tag}{'_quick' if args.quick else ''}.json"
    op_config = MeasureConfig(batch=args.batch, threads=args.threads, max_rounds=args.rounds)
    table = build_lut(space, lut_path, args.backend, op_config, resume=False, method=args.method)
    build_s = time.perf_counter() - start
    # 2. calibration and validation on random whole networks, as `proxyless lut validate` does
    nets = replace(NETWORK_MEASURE, max_rounds=args.net_rounds, rel_error=args.net_rel_error,
                   min_rounds=min(NETWORK_MEASURE.min_rounds, args.net_rounds))
    report = validate_lut(table, space, args.samples, args.calibrate, measure=nets)
    save_calibration(table, report, lut_path)
    plot_scatter(report, args.results / f"{name}.png")
    calibrated = report.calibrated
    passed = calibrated["within_10pct"] >= 0.9 and calibrated["rank_correlation"] >= 0.9
    strict = (calibrated["within_5pct"] >= 0.95 and calibrated["within_10pct"] == 1.0
              and calibrated["rank_correlation"] >= 0.95)
    timing = {"lut_build_s": build_s, "validation_s": time.perf_counter() - start - build_s}
    load = {"before": load_before, "after": os.getloadavg()}
    data = {"environment": environment(), "args": {**vars(args), "results": str(args.results)}, "timing": timing,
            "table_timing": table.header["timing"],
            "passed": passed, "passed_strict": strict, "load_average": load,
            "report": report.to_dict()}
    ops = "in context (inside whole networks)" if table.header["timing"] == "context" else "alone"
    markdown = (report.to_markdown()
                + f"\nOps timed {ops}; "
                f"networks timed paired with a reference network, each until its mean's standard error was under "
                f"{args.net_rel_error:.1%} (at most {args.net_rounds} rounds). "
                f"Table built in {build_s:.0f} s; validation took {timing['validation_s']:.0f} s; load average "
                f"(1 min) {load['before'][0]:.2f} before, {load['after'][0]:.2f} after. "
                f"Done-when (≥90% within ±10%, rank correlation ≥0.9): {'met' if passed else 'NOT met'}. "
                f"Issue 16's bar (≥95% within ±5%, all within ±10%, rank correlation ≥0.95): "
                f"{'met' if strict else 'NOT met'}.\n\n"
                f"Reproduce: `python benchmarks/latency_validation.py --space {args.space} --backend {args.backend} "
                f"--batch {args.batch} --threads {args.threads}"
                + (f" --method {args.method}" if args.method != "auto" else "") + "`\n")
    write_results(name, data, markdown, args.results)
    print(markdown)
    print(json.dumps(timing))
    return {"space": args.space, "backend": args.backend, "batch": args.batch, "threads": args.threads,
            "ops_timed": table.header["timing"], "calibration": report.calibration["kind"],
            "raw": report.raw, "calibrated": calibrated, "measurement": report.measurement(),
            "passed_strict": strict, "load_average": load, "seconds": timing["lut_build_s"] + timing["validation_s"]}


def write_all(lines: list[dict], args: argparse.Namespace) -> None:
    """latency_validation_all.{json,md}: one line per row validated so far, each with the run that measured
    it (its start time)."""
    table = ["| space | backend | batch | threads | ops timed | calibration | MAPE | within ±5% | within ±10% "
             "| rank correlation | uncalibrated MAPE | ceiling within ±5% | net SE (mean, max) | load before, after "
             "| issue 16's bar | run started |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for line in lines:
        c, noise, load = line["calibrated"], line["measurement"], line["load_average"]
        bar = "met" if line["passed_strict"] else "**not met**"
        table.append(
            f"| {line['space']} | {line['backend']} | {line['batch']} | {line['threads']} | {line['ops_timed']} "
            f"| {line['calibration']} | {c['mape']:.1%} | {c['within_5pct']:.0%} | {c['within_10pct']:.0%} "
            f"| {c['rank_correlation']:.3f} | {line['raw']['mape']:.1%} | {noise['ceiling_within_5pct']:.0%} "
            f"| {noise['mean_relative_se']:.1%}, {noise['max_relative_se']:.1%} "
            f"| {load['before'][0]:.2f}, {load['after'][0]:.2f} | {bar} | {line['run'][:16]} |")
    runs = sorted({line["run"] for line in lines})
    minutes = sum(line["seconds"] for line in lines) / 60
    when = (f"one after another in one run (started {runs[0]})" if len(runs) == 1 else
            f"in {len(runs)} runs (started {', '.join(runs)}), the rows of each one after another")
    markdown = "\n".join([
        "# Latency tables against whole networks: issue 16's rows", "",
        f"{len(lines)} of {len(ISSUE_16_ROWS)} rows, {when}, {minutes:.0f} min of measuring; each row its own "
        "table, calibrated on "
        f"{args.calibrate} random nets and judged on {args.samples} others, each net timed until its mean's "
        f"standard error was under {args.net_rel_error:.0%} (at most {args.net_rounds} rounds). The ceiling is the "
        "share of nets a perfect table would put within ±5% of these means (`measurement_ceiling`). Issue 16's "
        "bar: ≥ 95% within ±5%, all within ±10%, rank correlation ≥ 0.95. The load average (1 min) says what "
        "else ran.", "", *table, "",
        "Reproduce: `python benchmarks/latency_validation.py --all`" + (" --quick" if args.quick else "")
        + " (`--resume` keeps the rows measured and runs the rest)", ""])
    data = {"environment": environment(), "args": {**vars(args), "results": str(args.results)},
            "seconds": minutes * 60, "rows": lines}
    write_results(summary_name(args), data, markdown, args.results)
    print(markdown)


if __name__ == "__main__":
    main()
