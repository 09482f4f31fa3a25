"""The residual-scale probe trains each variant from a zero residual scale and reports what opened."""

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_each_variant_opens_only_the_branches_it_trains(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", ["residual_scale.py"])
    from residual_scale import main

    main(["--steps", "2", "--every", "1", "--batch-size", "4", "--variants", "standalone", "fixed", "fair-largest",
          "--results", str(tmp_path)])
    rows = {(r["variant"], r["step"]): r for r in json.loads((tmp_path / "residual_scale.json").read_text())["rows"]}
    assert set(rows) == {(v, s) for v in ("standalone", "fixed", "fair-largest") for s in (1, 2)}
    assert all(rows[v, s]["path_gamma"] > 0 for v in ("standalone", "fixed") for s in (1, 2))  # the net's path trained
    assert rows["standalone", 2]["largest_gamma"] is None
    assert rows["fixed", 2]["largest_gamma"] == 0  # the fixed path never runs the largest candidates
    assert rows["fair-largest", 1]["largest_gamma"] > 0  # step 0 of fair-largest is the largest path...
    assert rows["fair-largest", 1]["path_gamma"] == 0  # ... whose own batch norms the net's path does not share
    assert "| fair-largest | 2 |" in (tmp_path / "residual_scale.md").read_text()
