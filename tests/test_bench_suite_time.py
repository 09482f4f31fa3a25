"""The suite-time A/B tabulates junit test times and wall times per file, each side alone where only it
has the file."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def junit(path: Path, *times: float) -> None:
    cases = "".join(f'<testcase classname="t" name="c{i}" time="{t}"/>' for i, t in enumerate(times))
    path.write_text(f'<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>')


def test_summarize_adds_up_both_sides(tmp_path):
    junit(tmp_path / "base_1_test_a.xml", 1.0, 2.0)
    junit(tmp_path / "new_1_test_a.xml", 1.5, 2.5)
    junit(tmp_path / "new_1_test_b.xml", 4.0)
    (tmp_path / "wall.txt").write_text("base 1 tests/test_a.py 5.0\nnew 1 tests/test_a.py 6.0\n"
                                       "new 1 tests/test_b.py 7.0\ndone\n")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "suite_time.py"), "--summarize", str(tmp_path),
                           "--results", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "suite_time.json").read_text())
    assert report["totals"] == {"base": {"tests": 3.0, "wall": 5.0}, "new": {"tests": 8.0, "wall": 13.0}}
    assert [r["base_tests"] for r in report["rows"]] == [3.0, None]
    assert "new/base 2.667" in done.stdout
