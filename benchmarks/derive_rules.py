"""How the derived net's depth costs accuracy: finished NAS-Bench-Macro searches re-derived from their final α
with other rules, every pick scored against the ground truth (no training, seconds).

    python benchmarks/derive_rules.py --truth ../shared/data/nas-bench-macro/nas-bench-macro_cifar10.json

For every finished search in search_quality.py's run folders (default: every
`benchmarks/results/search_quality_runs*`; one target, or one member of a family), with its run folder's
latency table and its target T:

- **searched**: the net the search kept (the band rule: the argmax when within ±5% of T, else the most
  probable net within ±2.5%);
- **deepest, then α**: among the nets within ±2.5% of T, those with the fewest skips (at any stride: at
  a stride-2 layer a skip is a 1x1 projection, not an MBConv), and of them the most probable under the
  final α (the search still picks every op, but never trades a layer for a wider op);
- **deepest, no search**: the mean true accuracy of those deepest nets (a hand rule: keep every layer,
  fit the budget with the ops);
- **random in band**: the mean true accuracy of every net within ±2.5% of T.

Regret is against the best net within T + 5% (as search_quality.py scores it). Nothing here was trained
or searched again: the α are the ones the committed runs ended with.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import proxyless as px  # noqa: E402
from common import RESULTS, environment, write_results  # noqa: E402
from proxyless.latency.predict import LatencyModel  # noqa: E402
from proxyless.ops import format_op  # noqa: E402
from proxyless.search.objective import DERIVE_BAND as BAND  # noqa: E402  (the band deepest picks from)
from proxyless.search.quality import per_layer_latency  # noqa: E402
from proxyless.search.supernet import SuperNet  # noqa: E402

BUDGET = 0.05  # regret is against the best net up to T + 5%, as search_quality.py scores it
RULES = ("searched", "deepest, then α", "deepest, no search", "random in band")


def main() -> None:
    args = parse_args()
    space = px.get_space("nas-bench-macro")
    truth = json.loads(Path(args.truth).read_text())
    codes = list(truth)
    indices = np.array([[int(c) for c in code] for code in codes])
    accuracy = np.array([truth[code]["mean_acc"] for code in codes])
    # a layer given up as the library counts one (`MixedOp.is_skip`, as --derive-depth deepest does): a skip at
    # any stride (at a stride-2 layer a 1x1 projection instead of an MBConv)
    is_skip = np.array([[mixed.is_skip(i) for i in range(len(mixed.specs))]
                        for mixed in SuperNet(space).mixed_ops()])  # (layers, candidates)
    skips = is_skip[np.arange(indices.shape[1])[None, :], indices].sum(axis=1)
    latencies: dict[str, np.ndarray] = {}

    def latency_of(lut: Path) -> np.ndarray:
        if str(lut) not in latencies:
            predict = per_layer_latency(LatencyModel(space, px.load_lut(lut)))
            latencies[str(lut)] = np.array([predict(list(row)) for row in indices])
        return latencies[str(lut)]

    rows, by_depth = [], {}
    for run in (run for out in args.runs for run in finished_searches(out)):
        latency = latency_of(run["lut"])
        target = run["target_ms"]
        band = np.abs(latency - target) <= BAND * target
        best = accuracy[latency <= (1 + BUDGET) * target].max()
        log_p = np.log(np.asarray(run["probs"]))[np.arange(indices.shape[1])[None, :], indices].sum(axis=1)
        deepest = band & (skips == skips[band].min())
        pick = int(np.argmax(np.where(deepest, log_p, -np.inf)))
        searched = codes.index("".join(map(str, run["indices"])))
        by_depth[f"{run['lut'].parent.name} {target:.1f} ms"] = {  # what the truth charges for a skip
            int(z): float(accuracy[band & (skips == z)].mean()) for z in np.unique(skips[band])}
        picks = {"searched": (accuracy[searched], skips[searched]),
                 "deepest, then α": (accuracy[pick], skips[pick]),
                 "deepest, no search": (accuracy[deepest].mean(), skips[deepest].mean()),
                 "random in band": (accuracy[band].mean(), skips[band].mean())}
        rows.append({"run": run["name"], "target_ms": target, "percentile": run["percentile"], "best": float(best),
                     "deepest_code": codes[pick],
                     **{rule: {"accuracy": float(a), "regret": float(best - a), "skips": float(z)}
                        for rule, (a, z) in picks.items()}})
    settings = {**vars(args), "runs": [str(out) for out in args.runs], "results": str(args.results)}
    report = {"environment": environment(), "settings": settings, "rows": rows, "summary": summarise(rows),
              "band_accuracy_by_skips": by_depth}
    text = markdown(report)
    write_results(args.name, report, text, args.results)
    print(text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--truth", required=True, help="nas-bench-macro_cifar10.json")
    parser.add_argument("--runs", type=Path, nargs="+", default=sorted(RESULTS.glob("search_quality_runs*")),
                        help="search_quality.py --out folders (each with its lut.json)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="derive_rules")
    return parser.parse_args()


def finished_searches(out: Path) -> list[dict]:
    """Every finished single search and family member under `out`: its final α, kept indices, table, target."""
    names = [format_op(op) for op in px.get_space("nas-bench-macro").candidates]
    found = []
    for history in sorted(out.glob("**/arch_history.jsonl")):
        run_dir = history.parent
        member = (run_dir / "config.json").exists() is False  # a family member's config is its parent's
        config = json.loads(((run_dir.parent if member else run_dir) / "config.json").read_text())
        result = run_dir / "result.json"
        if not result.exists() or config["space"]["name"] != "nas-bench-macro":
            continue
        targets = config["latency"] if isinstance(config["latency"], list) else [config["latency"]]
        target = next(t for t in targets if not member or f"{t['target_ms']:g}ms" == run_dir.name)
        last = json.loads(history.read_text().splitlines()[-1])
        ops = json.loads(result.read_text())["arch"]
        found.append({"name": f"{out.name}/{run_dir.relative_to(out)}", "lut": out / "lut.json",
                      "target_ms": target["target_ms"],
                      "percentile": percentile_of(run_dir), "probs": last["probs"],
                      "indices": [names.index(op) for op in ops]})
    return found


def percentile_of(run_dir: Path) -> str:
    """p25 / p50 / p75 from the run's folder names (search_quality.py's layout)."""
    for part in reversed(run_dir.parts):
        if part[:1] == "p" and "_seed" in part:
            return part.split("_")[0]
    family = run_dir.parent / "config.json"
    targets = sorted(t["target_ms"] for t in json.loads(family.read_text())["latency"])
    return ("p25", "p50", "p75")[targets.index(float(run_dir.name.removesuffix("ms")))] if len(targets) == 3 else "?"


def summarise(rows: list[dict]) -> dict:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["percentile"]].append(row)
        groups["/".join(row["run"].split("/")[:2])].append(row)  # runs folder/variant
        groups["all"].append(row)
    return {name: {"searches": len(members),
                   **{rule: {key: float(np.mean([m[rule][key] for m in members]))
                             for key in ("regret", "skips")} for rule in RULES},
                   "deepest_then_alpha_wins": sum(m["deepest, then α"]["regret"] < m["searched"]["regret"]
                                                  for m in members),
                   "deepest_then_alpha_loses": sum(m["deepest, then α"]["regret"] > m["searched"]["regret"]
                                                   for m in members)}
            for name, members in sorted(groups.items())}


def markdown(report: dict) -> str:
    lines = ["# Derive rules against NAS-Bench-Macro's ground truth (finished searches re-derived)", "",
             "Each finished search's final α re-derived with other rules; mean regret (true accuracy points below "
             "the best net within T + 5%) and mean skips (of 8 layers) of the pick. No training.", "",
             "| searches of | searches | " + " | ".join(f"{r}: regret (skips)" for r in RULES)
             + " | deepest, then α better / worse than searched |",
             "|---|---|" + "---|" * len(RULES) + "---|"]
    for name, s in report["summary"].items():
        cells = " | ".join(f"{s[r]['regret']:.2f} ({s[r]['skips']:.2f})" for r in RULES)
        lines.append(f"| {name} | {s['searches']} | {cells} | {s['deepest_then_alpha_wins']} / "
                     f"{s['deepest_then_alpha_loses']} |")
    lines += ["", "The truth: mean true accuracy of the nets within ±2.5% of each target, by their skips:", "",
              "| table, target | " + " | ".join(f"{z} skips" for z in range(9)) + " |", "|---|" + "---|" * 9]
    for name, means in sorted(report["band_accuracy_by_skips"].items()):
        lines.append(f"| {name} | " + " | ".join(f"{means[z]:.2f}" if z in means else "" for z in range(9)) + " |")
    lines += ["", "| search | target ms | " + " | ".join(f"{r} regret" for r in RULES) + " |",
              "|---|---|" + "---|" * len(RULES)]
    for row in report["rows"]:
        lines.append(f"| {row['run']} | {row['target_ms']:.1f} | "
                     + " | ".join(f"{row[r]['regret']:.2f}" for r in RULES) + " |")
    lines += ["", "Reproduce: `python benchmarks/derive_rules.py --truth "
              "../shared/data/nas-bench-macro/nas-bench-macro_cifar10.json`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
