"""Smoke tests of the latency benchmarks: quick runs in subprocesses, writing into a temporary directory."""

import json
import subprocess
import sys
from pathlib import Path

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
