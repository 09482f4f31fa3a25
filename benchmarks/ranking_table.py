"""How well does each supernet rank the same trained nets? One table of several supernet_ranking reports.

`supernet_ranking.py --trained-only` scores a set of nets trained alone (its small ground truth) in one
supernet; run it once per supernet (or per snapshot of one search's checkpoint), then put the reports
side by side:

    python benchmarks/ranking_table.py benchmarks/results/supernet_ranking_e24_at6.json \
        benchmarks/results/supernet_ranking_e24_at12.json ... --name supernet_ranking_epochs

Each row: the supernet's search (epochs, warmup, the epoch its checkpoint was taken after), how many
held-out images scored each net, and Spearman ρ of the score against the nets' test top-1, with running
BN statistics and with BN recalibrated per net. Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", type=Path, nargs="+", help="supernet_ranking JSON reports")
    parser.add_argument("--name", default="supernet_ranking_table")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = [row_of(path) for path in args.reports]
    if len({tuple(row["nets"]) for row in rows}) > 1:  # by name: two sets can have the same counts
        truths = [f"{row['report']}: {row['truth']}" for row in rows]
        print(f"warning: the reports score different sets of trained nets: {truths}", file=sys.stderr)
    markdown = table(rows)
    print(markdown)
    write_results(args.name, {"rows": rows}, markdown, args.results)


def row_of(path: Path) -> dict:
    """One report's supernet and its ranking of the trained nets."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such report; supernet_ranking.py writes benchmarks/results/<--name>.json")
    report = json.loads(path.read_text())
    settings, search = report["settings"], report["settings"]["search"]
    trained = report["trained"]
    if not trained:
        raise SystemExit(f"{path}: no trained nets were scored; run supernet_ranking.py with --trained")
    ranking = report["ranking"]
    return {"report": path.name, "run": Path(settings["run"]).name, "epochs": search["epochs"],
            "warmup_epochs": search["warmup_epochs"], "sampling": search["sampling"],
            "checkpoint_epoch": settings.get("checkpoint_epoch", search["epochs"]), "images": settings["images"],
            "truth": f"{len(trained)} nets, {sum(len(t['test_top1']) for t in trained)} trainings",
            "nets": sorted(f"{t['name']} ×{len(t['test_top1'])}" for t in trained),
            "spearman": ranking.get("spearman"), "spearman_recalibrated": ranking.get("spearman_recalibrated")}


def table(rows: list[dict]) -> str:
    def rho(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    lines = ["# How each supernet ranks the same nets trained alone", "",
             "Spearman ρ of each net's supernet score (held-out valid top-1 on its path) against its test top-1 "
             "after training alone; one row per supernet_ranking report.", "",
             "| report | search | epochs (warmup) | scored after epoch | images scored | trained nets | "
             "ρ, running BN | ρ, BN recalibrated |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['report']} | {r['run']} | {r['epochs']} ({r['warmup_epochs']}, {r['sampling']} paths) | "
                     f"{r['checkpoint_epoch']} | {r['images']} | {r['truth']} | {rho(r['spearman'])} | "
                     f"{rho(r['spearman_recalibrated'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
