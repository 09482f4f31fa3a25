"""Ops timed in context or alone: which table predicts whole networks better, judged on one measurement?

For one (space, backend, batch, threads): build both tables (`lut build --method context` and
`--method isolated`) one after the other, then time random whole networks once, in one interleaved
run, and judge both tables on those same measurements (calibration chosen on the first `--calibrate`
nets, error on the other `--samples`), so the machine's drift between runs cannot favour either.

    python benchmarks/latency_methods.py --space proxyless-cifar --backend torch-cpu --batch 32 --threads 2

Writes benchmarks/results/latency_methods_<space>_<backend>_b<batch>_t<threads>.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment, write_results  # noqa: E402
from proxyless.latency.measure import MeasureConfig, build_lut, measure_archs  # noqa: E402
from proxyless.latency.validate import NETWORK_MEASURE, random_archs, validation_report  # noqa: E402
from proxyless.space import get_space  # noqa: E402

METHODS = ("context", "isolated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="proxyless-cifar")
    parser.add_argument("--backend", default="torch-cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--calibrate", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15, help="most rounds per network and per op")
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the script")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write (default: benchmarks/results)")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.calibrate, args.rounds = 4, 3, 2
    space = get_space(args.space)
    load_before, start = os.getloadavg(), time.perf_counter()
    tables, build_s = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for method in METHODS:  # 1. both tables, one after the other
            began = time.perf_counter()
            config = MeasureConfig(batch=args.batch, threads=args.threads, max_rounds=args.rounds)
            tables[method] = build_lut(space, Path(scratch) / f"{method}.json", args.backend, config, resume=False,
                                       method=method)
            build_s[method] = time.perf_counter() - began
    # 2. one interleaved measurement of the networks, then both tables judged on it
    archs = random_archs(space, args.calibrate + args.samples)
    nets = replace(NETWORK_MEASURE, batch=args.batch, threads=args.threads, max_rounds=args.rounds,
                   min_rounds=min(NETWORK_MEASURE.min_rounds, args.rounds))
    stats = measure_archs(archs, args.backend, nets)
    reports = {method: validation_report(tables[method], space, archs, stats, args.calibrate) for method in METHODS}
    spread = float(np.median([s.var**0.5 / s.mean for s in stats]))
    load = {"before": load_before, "after": os.getloadavg()}
    data = {"environment": environment(), "args": {**vars(args), "results": str(args.results)},
            "build_s": build_s, "total_s": time.perf_counter() - start, "load_average": load,
            "per_round_spread": spread, "reports": {m: r.to_dict() for m, r in reports.items()}}
    lines = [f"# Ops timed in context or alone: {args.space} on {args.backend}, batch {args.batch}, "
             f"{args.threads} thread(s)", "",
             f"{args.calibrate + args.samples} random networks timed once (paired with a reference network; per-round "
             f"spread of a net, median: {spread:.1%}); each table calibrated on the first {args.calibrate} and judged "
             f"on the other {args.samples}.", "",
             "| ops timed | table built in | raw sum MAPE | calibration | calibrated MAPE | within ±5% | within ±10% "
             "| rank correlation |", "|---|---|---|---|---|---|---|---|"]
    for method, report in reports.items():
        raw, cal = report.raw, report.calibrated
        lines.append(f"| {method} | {build_s[method]:.0f} s | {raw['mape']:.1%} | {report.calibration['kind']} | "
                     f"{cal['mape']:.1%} | {cal['within_5pct']:.0%} | {cal['within_10pct']:.0%} | "
                     f"{cal['rank_correlation']:.3f} |")
    lines += ["", f"Load average (1 min) {load['before'][0]:.2f} before, {load['after'][0]:.2f} after; nothing else "
              "ran. Reproduce: `python benchmarks/latency_methods.py --space "
              f"{args.space} --backend {args.backend} --batch {args.batch} --threads {args.threads}`", ""]
    name = f"latency_methods_{args.space}_{args.backend}_b{args.batch}_t{args.threads}"
    name += "_quick" if args.quick else ""
    write_results(name, data, "\n".join(lines), args.results)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
