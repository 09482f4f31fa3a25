"""How much longer does the test suite take at one revision than at another? An interleaved per-file A/B.

Each test file runs at the base revision and then at the new one, back to back, so both see the same
load on a shared machine; the totals sum pytest's own test times (junit, without interpreter start and
collection) and the wall time of each file's run. Files only one side has count for that side alone.

    python benchmarks/suite_time.py --base 4dde0bb --new HEAD          # about 25 minutes on 2 cores
    python benchmarks/suite_time.py --summarize /tmp/ab               # the table of a run already made

Each side is a clone checked out at its revision under --work, imported through PYTHONPATH. Writes
benchmarks/results/suite_time.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, environment, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# SIGINT is ignored in a background job; the fault tests need it, so it is restored before pytest starts
RESTORE_SIGINT = ("import signal, os, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execvp(sys.argv[1], sys.argv[1:])")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD~1")
    parser.add_argument("--new", default="HEAD")
    parser.add_argument("--work", type=Path, default=Path("/tmp/suite_time"))
    parser.add_argument("--summarize", type=Path, help="only tabulate the junit files of a finished run there")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    work = args.summarize or args.work
    if not args.summarize:
        run(args.base, args.new, work)
    rows = summarize(work)
    report = {"environment": environment(), "base": args.base, "new": args.new, "rows": rows,
              "totals": {side: {kind: sum(r[f"{side}_{kind}"] or 0 for r in rows) for kind in ("tests", "wall")}
                         for side in ("base", "new")}}
    totals = report["totals"]
    lines = [f"# Test suite time, {args.base} (base) against {args.new} (new), interleaved per file", "",
             "| file | base tests s | new tests s | base wall s | new wall s |", "|---|---|---|---|---|"]
    lines += [f"| {r['file']} | {_s(r['base_tests'])} | {_s(r['new_tests'])} | {_s(r['base_wall'])} "
              f"| {_s(r['new_wall'])} |" for r in rows]
    for kind in ("tests", "wall"):
        ratio = totals["new"][kind] / totals["base"][kind]
        lines.append(f"\n**{kind}: base {totals['base'][kind]:.0f} s, new {totals['new'][kind]:.0f} s, "
                     f"new/base {ratio:.3f}**")
    write_results("suite_time", report, "\n".join(lines) + "\n", args.results)
    print("\n".join(lines))


def run(base: str, new: str, work: Path) -> None:
    """Clone both revisions, then run every test file at base and at new, back to back."""
    work.mkdir(parents=True, exist_ok=True)
    for side, rev in (("base", base), ("new", new)):
        tree = work / f"{side}_wt"
        if not tree.is_dir():
            subprocess.run(["git", "clone", "-q", str(ROOT), str(tree)], check=True)
        subprocess.run(["git", "-C", str(tree), "checkout", "-q", rev], check=True)
    files = sorted({p.name for side in ("base", "new") for p in (work / f"{side}_wt" / "tests").glob("test_*.py")})
    with open(work / "wall.txt", "a") as wall:
        for name in files:
            for side in ("base", "new"):
                tree = work / f"{side}_wt"
                junit = work / f"{side}_1_{name[:-3]}.xml"
                if not (tree / "tests" / name).is_file() or junit.is_file():
                    continue
                started = time.perf_counter()
                with open(work / f"{side}_1_{name[:-3]}.log", "w") as log:
                    subprocess.run([sys.executable, "-c", RESTORE_SIGINT, sys.executable, "-m", "pytest", "-q",
                                    "-p", "no:cacheprovider", f"tests/{name}", f"--junitxml={junit}"],
                                   cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, stdout=log, stderr=log)
                wall.write(f"{side} 1 tests/{name} {time.perf_counter() - started}\n")
                wall.flush()


def summarize(work: Path) -> list[dict]:
    """One row per test file: junit test seconds and wall seconds of each side (None where it has none)."""
    wall: dict[tuple[str, str], float] = {}
    for line in (work / "wall.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            wall[(parts[0], Path(parts[2]).name)] = float(parts[3])
    rows = []
    for name in sorted({name for _, name in wall}):
        row: dict = {"file": name}
        for side in ("base", "new"):
            junit = work / f"{side}_1_{name[:-3]}.xml"
            tests = sum(float(case.get("time", 0)) for case in ET.parse(junit).iter("testcase")) \
                if junit.is_file() else None
            row.update({f"{side}_tests": tests, f"{side}_wall": wall.get((side, name))})
        rows.append(row)
    return rows


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
