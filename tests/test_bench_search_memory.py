"""Smoke test of benchmarks/search_memory.py: a quick run in a subprocess that writes no results."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search_memory.py"


def test_quick_run_prints_the_table_and_checks_the_claims():
    # two counts keep it well under a minute even on a busy 2-core machine; 13 exercises repeated ops
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--counts", "4", "13", "--no-write"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "| step | 4: saved MB | × | RSS Δ MB | ms | × | 13: saved MB |" in out
    for row in ("| single path (standalone net) |", "| weight step (supernet, 1 path) |",
                "| two-path arch step |", "| full arch step (DARTS) |"):
        assert row in out
    assert "Arch step within 15% of a weight step" in out
    assert "Binarized steps flat, full grows" in out
