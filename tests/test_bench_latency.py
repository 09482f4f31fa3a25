"""Smoke tests of the latency benchmarks: quick runs in subprocesses, writing into a temporary directory."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script, *argv):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick", *argv],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_validation_then_two_target_searches(tmp_path):
    out = run("latency_validation.py", "--space", "proxyless-cifar", "--batch", "8", "--results", str(tmp_path))
    assert "| calibrated |" in out and "Done-when" in out
    report = json.loads((tmp_path / "latency_proxyless-cifar_torch-cpu_b8_quick.json").read_text())
    assert (len(report["report"]["rows"]) == 4
            and (tmp_path / "latency_proxyless-cifar_torch-cpu_b8_quick.png").stat().st_size)
    lut = tmp_path / "lut_proxyless-cifar_torch-cpu_b8_quick.json"
    assert json.loads(lut.read_text())["header"]["calibration"]["samples"] == 3
    out = run("latency_targets.py", "--lut", str(lut), "--results", str(tmp_path), "--out", str(tmp_path / "runs"))
    result = json.loads((tmp_path / "latency_targets_quick.json").read_text())
    assert len(result["runs"]) == 2 and all(r["measured_ms"] > 0 for r in result["runs"])
    assert "Measured latencies order like the targets" in out


def test_methods_are_judged_on_one_measurement(tmp_path):
    out = run("latency_methods.py", "--space", "proxyless-cifar", "--batch", "8", "--threads", "1",
              "--results", str(tmp_path))
    assert "| context |" in out and "| isolated |" in out
    result = json.loads((tmp_path / "latency_methods_proxyless-cifar_torch-cpu_b8_t1_quick.json").read_text())
    reports = result["reports"]
    assert reports["context"]["header"]["timing"] == "context" and reports["isolated"]["header"]["timing"] == "isolated"
    measured = [[row["measured_ms"] for row in report["rows"]] for report in reports.values()]
    assert measured[0] == measured[1] and len(measured[0]) == 4  # the same nets, timed once


def test_all_rows_summary_is_written_after_each_row(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    import argparse

    from latency_validation import ISSUE_16_ROWS, kept_rows, row_key, write_all

    def line(space, backend, batch, threads, within_5pct):
        metrics = {"mape": 0.02, "within_5pct": within_5pct, "within_10pct": 1.0, "rank_correlation": 0.97}
        return {"space": space, "backend": backend, "batch": batch, "threads": threads, "ops_timed": "context",
                "calibration": "none", "raw": {**metrics, "mape": 0.03}, "calibrated": metrics,
                "measurement": {"mean_relative_se": 0.008, "max_relative_se": 0.02, "ceiling_within_5pct": 0.999},
                "passed_strict": within_5pct >= 0.95, "load_average": {"before": [0.1], "after": [1.9]},
                "seconds": 60.0, "run": "2026-12-04T23:02:14+00:00"}

    args = argparse.Namespace(calibrate=20, samples=50, net_rel_error=0.01, net_rounds=40, quick=False,
                              results=tmp_path)
    lines = [line("nas-bench-macro", "torch-cpu", 32, 1, 0.98), line("proxyless-cifar", "onnxruntime", 32, 2, 0.90)]
    write_all(lines, args)
    text = (tmp_path / "latency_validation_all.md").read_text()
    assert f"2 of {len(ISSUE_16_ROWS)} rows, one after another in one run (started 2026-12-04T23:02" in text
    assert "| nas-bench-macro | torch-cpu | 32 | 1 | context | none | 2.0% | 98% | 100% | 0.970 | 3.0% | 100% " in text
    assert text.count("| met |") == 1 and text.count("| **not met** |") == 1
    assert json.loads((tmp_path / "latency_validation_all.json").read_text())["rows"] == lines

    # --resume keeps those rows in issue 16's order and leaves the others to measure; a later run is named
    write_all([*lines, {**line("proxyless-cifar", "torch-cpu", 32, 1, 0.97), "run": "2026-12-05T01:00:00+00:00"}],
              args)
    assert "3 of 8 rows, in 2 runs (started 2026-12-04T23:02:14+00:00, 2026-12-05T01:00:00+00:00)" in (
        tmp_path / "latency_validation_all.md").read_text()
    resumed = argparse.Namespace(**vars(args), rounds=15, method="auto")
    json_path = tmp_path / "latency_validation_all.json"
    data = json.loads(json_path.read_text())
    json_path.write_text(json.dumps({**data, "args": {**data["args"], "rounds": 15, "method": "auto"}}))
    kept = kept_rows(resumed)
    order = [row for row in ISSUE_16_ROWS if row in {row_key(k) for k in kept}]
    assert [row_key(k) for k in kept] == order and len(kept) == 3

    # a file measured with other settings is not mixed in: one-line error, nothing overwritten
    with pytest.raises(SystemExit, match="other net_rounds; drop --resume"):
        kept_rows(argparse.Namespace(**{**vars(resumed), "net_rounds": 20}))
    assert json.loads(json_path.read_text())["rows"] == data["rows"]
