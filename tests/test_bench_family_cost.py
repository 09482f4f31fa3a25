"""benchmarks/family_cost.py end to end on a tiny space and table: a family and a search per target run
as lane jobs, every net is derived again with --measured-derive (timed here), and the report compares
their wall time and memory and says each net's measured error."""

import json
import subprocess
import sys
from pathlib import Path

from helpers import synthetic_table, tiny32_space
from proxyless.latency.lut import save_lut

ROOT = Path(__file__).resolve().parents[1]


def test_family_cost_runs_the_family_and_the_separate_searches_and_measures_every_net(tmp_path):
    space = tiny32_space()
    (tmp_path / "space.json").write_text(json.dumps(space.to_dict()))
    save_lut(synthetic_table(space), tmp_path / "lut.json")
    command = [sys.executable, str(ROOT / "benchmarks" / "family_cost.py"), "--data", "sample", "--limit-images",
               "128", "--space", str(tmp_path / "space.json"), "--lut", str(tmp_path / "lut.json"), "--targets",
               "2.2", "2.8", "--epochs", "2", "--batch-size", "32", "--work", str(tmp_path / "work"), "--results",
               str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "family_cost.json").read_text())
    assert set(report["singles"]) == {"2.2ms", "2.8ms"} and report["family"]["wall_s"] > 0
    assert report["cost_ratio"] == report["family"]["wall_s"] / sum(r["wall_s"] for r in report["singles"].values())
    assert [(n["target_ms"], n["kind"]) for n in report["nets"]] == [
        (2.2, "family"), (2.2, "single"), (2.8, "family"), (2.8, "single")]
    for net in report["nets"]:  # timed here: the synthetic table is far from this machine, so derived again
        assert net["measured_ms"] > 0 and 1 <= net["nets_timed"] <= 3
        assert net["within"] == (abs(net["measured_ms"] / net["target_ms"] - 1) <= 0.025)
    assert (tmp_path / "work" / "family" / "2.8ms" / "measured.json").is_file()
    assert "| family (2.2ms, 2.8ms) |" in done.stdout
    # rerun: everything is read back, nothing searched or timed again
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "started" not in again.stdout
    assert json.loads((tmp_path / "family_cost.json").read_text())["nets"] == report["nets"]
