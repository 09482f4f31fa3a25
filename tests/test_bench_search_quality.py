"""The search-quality benchmark end to end (`--quick`: embedded sample, tiny searches), scored against a
ground-truth table made here from the NAS-Bench-Macro cost extract (accuracy rising with MACs)."""

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

from proxyless.search.pipeline import derive_from_run
from proxyless.space import get_space

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_scores_an_ablation_and_three_targets(tmp_path):
    with gzip.open(ROOT / "tests" / "data" / "nas_bench_macro_costs.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f))
    truth = {r["code"]: {"mean_acc": 85 + 8 * int(r["flops"]) / 1.06e8 + (int(r["code"]) % 7) / 20,
                         "params": int(r["params"]), "flops": int(r["flops"])} for r in rows}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_quality.py"), "--quick",
                           "--truth", str(tmp_path / "truth.json"), "--out", str(tmp_path / "runs"),
                           "--results", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "search_quality_quick.json").read_text())
    [variant] = report["variants"].values()
    for mode in ("recalibrated", "running_stats"):
        assert variant["ranking"][mode]["overall"]["count"] == 6
    assert len(variant["entropy"]) == 2 and variant["regret"]["pool_count"] > 0
    searches = report["searches"]
    assert [s["target_percentile"] for s in searches] == [25, 50, 75]
    assert searches[1]["derived_code"] == variant["regret"]["derived_code"]  # the median search is reused
    targets = [s["target_ms"] for s in searches]
    assert targets == sorted(targets) and all(s["derived_in_band"] for s in searches)
    assert all(s["best_accuracy"] >= s["derived_accuracy"] - 1e-9 or not s["derived_in_band"] for s in searches)
    assert "| entangled-fair |" in done.stdout and (tmp_path / "search_quality_quick.png").stat().st_size > 0
    # every search re-derived the --derive-top way: a net in the band, scored against the same pool
    for scored in [variant["scored"]] + [s["scored"] for s in searches]:
        assert scored["k"] == 10 and scored["derived_in_band"] and scored["pool_count"] > 0
    # how hard: nets near the best counted per target; this table has no per-seed runs, so no noise floor
    assert all(d["near_best"] >= 1 and d["one_seed_regret"] == [] for d in report["difficulty"].values())
    # rank_images on the median search: tau per number of images, a row per layer
    run = tmp_path / "runs" / "entangled-fair" / "p50_seed0"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rank_images.py"), "--run", str(run),
                           "--data", "sample", "--truth", str(tmp_path / "truth.json"), "--nets", "4", "--images",
                           "40", "--chunk", "20", "--results", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ranked = json.loads((tmp_path / "rank_images.json").read_text())
    assert [r["images"] for r in ranked["rows"]] == [20, 40] and len(ranked["layers"]) == 8
    # --family: the three targets of a seed from one supernet, each scored like a search of its own
    # (--no-ablation: without the median search, as a lane beside one running the ablation)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_quality.py"), "--quick", "--family",
                           "--no-ablation", "--truth", str(tmp_path / "truth.json"), "--out", str(tmp_path / "runs"),
                           "--results", str(tmp_path), "--name", "family"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    family_report = json.loads((tmp_path / "family.json").read_text())
    assert family_report["variants"] == {}
    family = family_report["searches"]
    assert [s["target_percentile"] for s in family] == [25, 50, 75] and [s["target_ms"] for s in family] == targets
    assert all(s["family"] == [25, 50, 75] and s["search_s"] == family[0]["search_s"] for s in family)
    assert all(s["derived_in_band"] and s["scored"]["derived_in_band"] for s in family)
    for search in family:  # a subdirectory per target, with its net
        label = f"{round(search['target_ms'], 3):g}ms"
        assert (tmp_path / "runs" / "entangled-fair" / "family_seed0" / label / "arch.json").is_file()
    assert "share one supernet" in done.stdout
    # derive_rules.py re-derives every finished search from its last α: its "searched" pick is the net each
    # search kept (same regret as search_quality scored), and the deepest pick never keeps more skips
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "derive_rules.py"), "--truth",
                           str(tmp_path / "truth.json"), "--runs", str(tmp_path / "runs"), "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rules = json.loads((tmp_path / "derive_rules.json").read_text())
    scored = {f"runs/entangled-fair/p{s['target_percentile']}_seed0": s["regret"] for s in searches}
    scored |= {f"runs/entangled-fair/family_seed0/{round(s['target_ms'], 3):g}ms": s["regret"] for s in family}
    assert sorted(row["run"] for row in rules["rows"]) == sorted(scored)
    for row in rules["rows"]:
        assert abs(row["searched"]["regret"] - scored[row["run"]]) < 1e-9, row["run"]
        assert row["deepest, then α"]["skips"] <= row["random in band"]["skips"]
        assert row["deepest, then α"]["regret"] >= 0 and row["best"] >= row["random in band"]["accuracy"]
    assert rules["summary"]["all"]["searches"] == rules["summary"]["runs/entangled-fair"]["searches"] == 6
    assert "| all | 6 |" in done.stdout and "| runs/entangled-fair | 6 |" in done.stdout
    # its "deepest, then α" is the library's --derive-depth deepest (the same band, the same dynamic programme)
    median = next(row for row in rules["rows"] if row["run"] == "runs/entangled-fair/p50_seed0")
    again = derive_from_run(run, out=tmp_path / "deepest.json", derive_depth="deepest")
    assert "deepest" in again.derived_by
    assert "".join(str(i) for i in get_space("nas-bench-macro").indices_of(again.arch)) == median["deepest_code"]


def test_asking_for_neither_the_ablation_nor_the_targets_is_refused(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_quality.py"), "--no-targets",
                           "--no-ablation", "--truth", str(tmp_path / "truth.json")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "leave nothing to run" in done.stderr
