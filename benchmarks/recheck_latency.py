"""Are the nets `search_vs_baselines.py` compares still at equal latency on the machine of today?

Each target's nets were matched to its MobileNetV2 in one interleaved measurement, and a later round's
nets in another, on whatever machine the session had: 2026-12-04's ran the space's nets at ×1.63 their
table time, 2026-12-06's at ×1.09, and MobileNetV2 did not speed up by as much. So "equal measured
latency" holds for the machine each net was matched on. This script times every kept net of every
target again, all in one interleaved measurement paired with the table's reference network, and
reports each net against its target's MobileNetV2 today, beside its offset when it was kept.

    python benchmarks/recheck_latency.py                      # WORK: benchmarks/results/search_vs_baselines_runs

Writes benchmarks/results/recheck_latency.{json,md} (`--name` to change). Measure on a quiet machine
(pause training lanes: their processes can be stopped with SIGSTOP and resumed with SIGCONT).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, SEARCH_LUT, environment, write_results  # noqa: E402
from proxyless.arch import load_arch  # noqa: E402
from proxyless.latency.lut import load_lut  # noqa: E402
from proxyless.latency.measure import Reference, reference_arch  # noqa: E402
from proxyless.latency.validate import network_config  # noqa: E402
from proxyless.space import get_space  # noqa: E402
from search_vs_baselines import BAND, QUICK_ROUNDS, load_matched, measure_named  # noqa: E402


def recheck(work: Path, lut: Path, space_name: str, quick: bool = False) -> list[dict]:
    """A row per kept net: its time today and its offset to its target's MobileNetV2 today and when kept."""
    matched = load_matched(work)
    table = load_lut(lut)
    config = network_config(table.header, **(QUICK_ROUNDS if quick else {}))
    reference = Reference(reference_arch(get_space(space_name)), table.header["backend"], config)
    names = list(dict.fromkeys(name for chosen in matched["chosen"].values() for name in chosen))
    today = measure_named({name: load_arch(work / "archs" / f"{name}.json") for name in names},
                          table.header["backend"], config, reference)
    rows = []
    for target, chosen in matched["chosen"].items():
        anchor = matched["anchors"][target]
        goal_then, goal_now = matched["goals_ms"][target], today[anchor]["mean_ms"]
        for name in chosen:
            now = today[name]["mean_ms"] / goal_now - 1
            rows.append({"target_ms": float(target), "net": name, "anchor": anchor,
                         "kept_off": matched["measured"][name]["mean_ms"] / goal_then - 1,
                         "today_ms": today[name]["mean_ms"], "today_std_ms": today[name]["std_ms"],
                         "today_off": now, "in_band_today": abs(now) <= BAND})
    return rows


def markdown(rows: list[dict], env: dict, command: str) -> str:
    lines = [f"| {r['target_ms']:g} | {r['net']} | {r['kept_off']:+.1%} | {r['today_ms']:.1f} ± {r['today_std_ms']:.1f}"
             f" | {r['today_off']:+.1%} | {'yes' if r['in_band_today'] else '**no**'} |" for r in rows]
    outside = [r["net"] for r in rows if not r["in_band_today"]]
    return (
        "# The compared nets' latency, measured again\n\n"
        f"{env['date']}, {env['cpu']} ({env['cpu_count']} cores). Every kept net of every target timed in one "
        "interleaved measurement, each sample paired with the table's reference network; a net's offset is "
        "against its target's MobileNetV2 in this measurement (\"when kept\": in the measurement that kept "
        f"it, which for a later round is another day's).\n\n"
        "| target (ms) | net | off its MobileNetV2 when kept | today (ms) | off its MobileNetV2 today | "
        f"within ±{BAND:.1%} today |\n|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n\n"
        + (f"Outside ±{BAND:.1%} today: {', '.join(outside)}.\n\n" if outside else f"All within ±{BAND:.1%} today.\n\n")
        + f"Reproduce: `{command}`\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=RESULTS / "search_vs_baselines_runs")
    parser.add_argument("--lut", type=Path, default=SEARCH_LUT)
    parser.add_argument("--space", default="proxyless-cifar")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="recheck_latency")
    parser.add_argument("--quick", action="store_true", help="two rounds per net (a smoke test; says nothing)")
    args = parser.parse_args()
    rows = recheck(args.work, args.lut, args.space, args.quick)
    env = environment()
    command = "python benchmarks/recheck_latency.py" + ("" if args.work == RESULTS / "search_vs_baselines_runs"
                                                        else f" --work {args.work}")
    text = markdown(rows, env, command)
    write_results(args.name, {"environment": env, "band": BAND, "rows": rows}, text, args.results)
    print(text)


if __name__ == "__main__":
    main()
