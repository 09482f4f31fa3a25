"""Do searches at two latency targets land on them, and do the measured latencies order the same way?

Runs a search for each target (`proxyless.search_arch`, what `proxyless search --lut LUT --target-latency T`
runs) on the embedded CIFAR-10 sample,
then times the derived networks again, interleaved (on the table's backend, batch and threads), so
that their order is not an artefact of the machine's drift between the two runs.

    python benchmarks/latency_targets.py --lut benchmarks/results/lut_proxyless-cifar_torch-cpu_b32.json

Default targets: 35% and 65% of the way from the fastest to the slowest net of the space on the table.
Writes benchmarks/results/latency_targets.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxyless as px  # noqa: E402
from common import RESULTS, environment, write_results  # noqa: E402
from proxyless.latency.validate import network_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lut", required=True)
    parser.add_argument("--space", default="proxyless-cifar")
    parser.add_argument("--targets", type=float, nargs=2, help="two targets in ms (default: see above)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--arch-lr", type=float, default=0.006, help="α learning rate of the searches")
    parser.add_argument("--arch-every", type=int, default=2, help="an arch step every N weight steps")
    parser.add_argument("--out", help="run directories (default: a temporary directory)")
    parser.add_argument("--quick", action="store_true", help="tiny searches to check the script")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write (default: benchmarks/results)")
    args = parser.parse_args()
    table, space = px.load_lut(args.lut), px.get_space(args.space)
    fastest, slowest = px.latency_range(space, table)
    targets = args.targets or [fastest + f * (slowest - fastest) for f in (0.35, 0.65)]
    out = Path(args.out or tempfile.mkdtemp(prefix="latency_targets_"))
    runs = []
    quick = {"epochs": 2, "warmup_epochs": 1, "batch_size": 16} if args.quick else {}
    search_config = px.SearchConfig(**{"epochs": args.epochs, "warmup_epochs": 2, "arch_lr": args.arch_lr,
                                "arch_every": args.arch_every, "progress": False, **quick})
    quick_data = {"limit_images": 128, "valid_size": 0.02} if args.quick else {}  # 100 valid images, not 1,000
    data = px.load_search_data("sample", space.input_size, **quick_data)
    for target in targets:  # 1. one search per target
        start = time.perf_counter()
        found = px.search_arch(space, data, search_config, out=out / f"target_{target:.1f}ms", overwrite=True,
                               latency=px.LatencyTarget(lut=args.lut, target_ms=round(target, 3), measure=False))
        runs.append({"target_ms": target, "search_s": time.perf_counter() - start, **found.latency,
                     "arch": found.arch.op_strings()})
    # 2. the derived nets, timed together
    header = table.header
    config = network_config(header, max_rounds=3 if args.quick else 20, min_rounds=3 if args.quick else 10)
    archs = [px.load_arch(out / f"target_{r['target_ms']:.1f}ms" / "arch.json") for r in runs]
    for run, stat in zip(runs, px.measure_archs(archs, header["backend"], config)):
        run.update(measured_ms=stat.mean, measured_std_ms=stat.var**0.5)
    same_order = (runs[0]["measured_ms"] < runs[1]["measured_ms"]) == (runs[0]["target_ms"] < runs[1]["target_ms"])
    on_target = all(r["on_target"] for r in runs)
    rows = "\n".join(
        f"| {r['target_ms']:.2f} | {r['predicted_ms']:.2f} ({r['error']:+.1%}) | {r['argmax_predicted_ms']:.2f} | "
        f"{r['measured_ms']:.2f} ± {r['measured_std_ms']:.2f} | {r['derived_by'].split(' (')[0]} | "
        f"{r['search_s']:.0f} s |"
        for r in runs)
    markdown = (
        f"# Searches at two latency targets ({args.space}, {header['backend']}, batch {header['batch']}, "
        f"{header.get('threads')} threads)\n\n"
        f"Embedded CIFAR-10 sample, {args.epochs if not args.quick else 2} search epochs each (α lr {args.arch_lr}, "
        f"an arch step every {args.arch_every} weight steps); table {Path(args.lut).name}.\n\n"
        "| target (ms) | predicted (ms) | argmax would be (ms) | measured (ms) | derived by | search time |\n"
        "|---|---|---|---|---|---|\n" + rows + "\n\n"
        f"Predicted within ±5% of both targets: {'yes' if on_target else 'NO'}. "
        f"Measured latencies order like the targets: {'yes' if same_order else 'NO'}.\n\n"
        f"Reproduce: `python benchmarks/latency_targets.py --lut {args.lut}`\n")
    write_results("latency_targets" + ("_quick" if args.quick else ""),
                  {"environment": environment(), "args": {**vars(args), "results": str(args.results)}, "runs": runs,
                   "on_target": on_target, "same_order": same_order}, markdown, args.results)
    print(markdown)


if __name__ == "__main__":
    main()
