"""The residual-init check runs one short search per start scale and scores each supernet's net on depth."""

import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_each_scale_is_searched_scored_and_read_back_when_finished(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from residual_init import main

    argv = ["--data", "sample", "--scales", "0.5", "--epochs", "1", "--warmup-epochs", "0", "--limit-images", "64",
            "--images", "20", "--bn-batches", "1", "--out", str(tmp_path / "runs"), "--results", str(tmp_path)]
    main(argv)
    row, = json.loads((tmp_path / "residual_init.json").read_text())["rows"]
    nets = [net["net"].split(", ")[-1] for net in row["nets"]]
    assert nets[1:] == ["optional layers zero", "optional layers mb_k3_e3", "optional layers mb_k7_e6",
                        "every expansion 3", "every expansion 6"]
    ms = {name: net["predicted_ms"] for name, net in zip(nets, row["nets"])}
    assert ms["optional layers zero"] < ms["optional layers mb_k3_e3"] < ms["optional layers mb_k7_e6"]
    assert 0 < row["optional_layers"] and 0 <= row["optional_kept"] <= row["optional_layers"]
    # one SGD step from 0.5: the optional layers' residual scales are still near where they started
    assert all(0.4 < gamma < 0.6 for gamma in row["residual_scales"]["optional"])
    first = row["search_s"]
    main(argv)  # finished: read back, not searched again
    again, = json.loads((tmp_path / "residual_init.json").read_text())["rows"]
    assert again["search_s"] == first and again["nets"] == row["nets"]
    assert "| 0.5 |" in (tmp_path / "residual_init.md").read_text()
