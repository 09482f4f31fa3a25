"""Backends, whole-network timing, calibration and validation of latency tables (real timings, tiny nets)."""

import json
from dataclasses import replace

import matplotlib.image
import numpy as np
import pytest
import torch

from helpers import tiny_space
from proxyless.arch import Arch, save_arch
from proxyless.cli import main
from proxyless.latency.keys import Context, all_keys
from proxyless.latency.lut import load_lut
from proxyless.latency.measure import MeasureConfig, build_lut, measure_archs
from proxyless.latency.predict import Calibration, predict_latency
from proxyless.latency.runners import BackendUnavailable, check_backend, export_onnx, make_timer
from proxyless.latency.validate import (
    fit_calibration,
    measurement_ceiling,
    random_archs,
    rank_correlation,
    validate_lut,
)
from proxyless.net import build_net

TINY = tiny_space()
QUICK = MeasureConfig(batch=1, calls_per_sample=2, warmup_calls=1, min_rounds=2, max_rounds=2)


@pytest.mark.parametrize("backend", ["torch-cpu", "onnxruntime"])
def test_timers_time_real_calls(backend):
    net = build_net(random_archs(TINY, 1)[0])
    timer = make_timer(net, (1, 3, 16, 16), backend, threads=1, warmup_calls=1)
    assert 0 < timer(3) < 1000


def test_onnx_export_matches_eager_in_onnxruntime():
    import onnxruntime as ort

    net = build_net(random_archs(TINY, 1)[0]).eval()
    x = torch.randn(3, 3, 16, 16)
    session = ort.InferenceSession(export_onnx(net, x[:1], dynamic_batch=True), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})  # batch 3 through a batch-1 export
    np.testing.assert_allclose(out, net(x).detach().numpy(), atol=1e-4)


def test_unknown_or_unavailable_backend_is_a_clear_error():
    with pytest.raises(Exception, match="unknown latency backend 'tpu'; choose one of torch-cpu"):
        check_backend("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="needs a CUDA GPU.*use --backend torch-cpu or onnxruntime"):
            check_backend("torch-cuda")
    else:
        check_backend("torch-cuda")


def test_onnxruntime_table_covers_the_space(tmp_path):
    table = build_lut(TINY, tmp_path / "ort.json", "onnxruntime", QUICK, progress=False)
    table.check_covers(TINY)
    assert table.header["backend"] == "onnxruntime" and "onnxruntime" in table.header["versions"]
    assert set(table.entries) == set(all_keys(TINY, Context(1, "float32", "onnxruntime")))


def test_random_archs_are_distinct_seeded_and_exclude():
    first = random_archs(TINY, 6, seed=3)
    assert len({a.ops for a in first}) == 6 and first == random_archs(TINY, 6, seed=3)
    others = random_archs(TINY, 6, seed=3, exclude=first[:3])
    assert not {a.ops for a in others} & {a.ops for a in first[:3]}


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [9, 5, 2, 1]) == pytest.approx(-1.0)
    # ties get their mean rank: ranks (0.5, 0.5, 2, 3) against (0, 1, 2, 3)
    expected = np.corrcoef([0.5, 0.5, 2, 3], [0, 1, 2, 3])[0, 1]
    assert rank_correlation([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(expected)


def test_fit_calibration_recovers_a_line():
    raw = [1.0, 2.0, 3.5, 5.0]
    fit = fit_calibration(raw, [2.0 * r + 0.5 for r in raw])
    assert fit.scale == pytest.approx(2.0) and fit.offset == pytest.approx(0.5)
    with pytest.raises(Exception, match="at least 3 networks"):
        fit_calibration([1.0], [1.0])


def test_validate_separates_calibration_from_validation(tmp_path):
    lut = build_lut(TINY, tmp_path / "lut.json", "torch-cpu", replace(QUICK, threads=1), progress=False)
    report = validate_lut(lut, TINY, samples=4, calibrate=3, measure=QUICK, progress=False)
    calibration_archs = {" ".join(a.op_strings()) for a in random_archs(TINY, 3)}
    assert len(report.rows) == 4 and not {r["arch"] for r in report.rows} & calibration_archs
    fit = Calibration(report.calibration["scale"], report.calibration["offset"])
    for row in report.rows:
        assert row["predicted_ms"] == pytest.approx(fit.apply(row["raw_ms"])) and row["measured_ms"] > 0
    for metrics in (report.raw, report.calibrated):
        assert 0 <= metrics["within_5pct"] <= metrics["within_10pct"] <= 1 and -1 <= metrics["rank_correlation"] <= 1
    noise = report.to_dict()["measurement"]  # how far this measurement itself can judge the table
    assert 0 <= noise["mean_relative_se"] <= noise["max_relative_se"] and 0 < noise["ceiling_within_5pct"] <= 1
    assert "ceiling of this measurement" in report.to_markdown()


def test_lut_validate_and_latency_measure_commands(tmp_path, capsys):
    lut_path = tmp_path / "lut.json"
    build_lut(TINY, lut_path, "torch-cpu", replace(QUICK, threads=1), progress=False)
    space_file = tmp_path / "tiny.json"
    space_file.write_text(json.dumps(TINY.to_dict()))
    code = main(["lut", "validate", "--lut", str(lut_path), "--space", str(space_file), "--samples", "3",
                 "--calibrate", "3", "--out", str(tmp_path / "val"), "--no-progress"])
    assert code == 0 and "within ±10%" in capsys.readouterr().out
    image = matplotlib.image.imread(tmp_path / "val" / "scatter.png")
    assert image.shape[0] > 100 and image.shape[1] > 100
    saved = json.loads((tmp_path / "val" / "validation.json").read_text())
    assert len(saved["rows"]) == 3
    table = load_lut(lut_path)  # the calibration went into the table, and predictions use it
    assert table.header["calibration"]["samples"] == 3
    arch = random_archs(TINY, 1, seed=9)[0]
    uncalibrated = replace(table, header={k: v for k, v in table.header.items() if k != "calibration"})
    scale, offset = table.header["calibration"]["scale"], table.header["calibration"]["offset"]
    assert predict_latency(arch, table) == pytest.approx(scale * predict_latency(arch, uncalibrated) + offset)
    # whole-network timing of an arch.json, and of an exported ONNX file
    save_arch(arch, tmp_path / "arch.json")
    assert main(["latency", "measure", "--arch", str(tmp_path / "arch.json"), "--rounds", "2", "--threads", "1"]) == 0
    assert " ms (torch-cpu, batch 1, 2 rounds" in capsys.readouterr().out
    (tmp_path / "net.onnx").write_bytes(export_onnx(build_net(arch), torch.randn(1, 3, 16, 16)))
    onnx = str(tmp_path / "net.onnx")
    assert main(["latency", "measure", "--onnx", onnx, "--image-size", "16", "--rounds", "2"]) == 0
    assert "net.onnx: " in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["latency", "measure", "--onnx", "missing.onnx", "--image-size", "16"], "cannot read the ONNX file"),
    (["latency", "measure", "--onnx", "x.onnx"], "needs --image-size"),
    (["latency", "measure", "--zoo", "proxyless_cpu", "--backend", "tpu"], "unknown latency backend"),
    (["latency", "measure", "--zoo", "proxyless_cpu", "--rounds", "0"], "--rounds must be positive"),
])
def test_measure_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_measure_archs_interleaves_whole_networks():
    archs = random_archs(TINY, 2)
    stats = measure_archs(archs, "torch-cpu", replace(QUICK, threads=1), progress=False)
    assert [s.count for s in stats] == [2, 2] and all(s.mean > 0 for s in stats)  # round(2 · 0.75) rounds kept
    assert isinstance(archs[0], Arch)


def test_trimmed_stat_drops_the_slowest_quarter():
    from proxyless.latency.measure import trimmed_stat

    stat = trimmed_stat([10.0, 11.0, 12.0, 40.0])  # one round hit by another process
    assert stat.count == 3 and stat.mean == pytest.approx(11.0) and stat.var == pytest.approx(1.0)


def test_lut_build_calibrates_in_the_same_run_when_asked(tmp_path, capsys):
    """A first table can be calibrated before the first search: `lut build --calibrate N` times N random
    networks (and --validate others) and stores the chosen calibration; without it, the build says how."""
    space_file = tmp_path / "tiny.json"
    space_file.write_text(json.dumps(TINY.to_dict()))
    build = ["lut", "build", "--space", str(space_file), "--batch-size", "1", "--threads", "1", "--no-progress"]
    assert main([*build, "--out", str(tmp_path / "plain.json")]) == 0
    assert "calibrate the table before a search" in capsys.readouterr().out
    assert "calibration" not in load_lut(tmp_path / "plain.json").header
    assert main([*build, "--out", str(tmp_path / "lut.json"), "--calibrate", "4", "--validate", "3"]) == 0
    printed = capsys.readouterr().out
    calibration = load_lut(tmp_path / "lut.json").header["calibration"]
    assert calibration["samples"] == 4 and calibration["kind"] in ("none", "scale", "affine")
    assert set(calibration["cv_mape"]) == {"none", "scale", "affine"} and "chosen by leave-one-out" in printed
    assert main([*build, "--out", str(tmp_path / "bad.json"), "--calibrate", "4", "--validate", "2"]) == 2


def test_random_archs_refuses_more_nets_than_the_space_has():
    assert len(random_archs(TINY, 18)) == 18  # 3 x 3 x 2 candidates: every net, each once
    with pytest.raises(Exception, match="tiny has 18 architectures; 19 distinct random ones"):
        random_archs(TINY, 19)


def test_measurement_ceiling_is_what_the_validation_noise_allows_a_perfect_table():
    def row(ms: float, std: float, rounds: int) -> dict:
        return {"measured_ms": ms, "measured_std_ms": std, "rounds": rounds}

    exact = measurement_ceiling([row(40.0, 0.0, 10), row(80.0, 0.0, 10)])
    assert exact["ceiling_within_5pct"] == 1.0 and exact["mean_relative_se"] == 0.0
    # a standard error of 2.5% of the mean: a perfect table is within ±5% (2 SE) of 95.4% of such means
    noisy = measurement_ceiling([row(40.0, 0.025 * 40.0 * 3.0, 9)])
    assert noisy["mean_relative_se"] == pytest.approx(0.025)
    assert noisy["ceiling_within_5pct"] == pytest.approx(0.9545, abs=1e-4)
    mixed = measurement_ceiling([row(40.0, 0.0, 10), row(40.0, 0.025 * 40.0 * 3.0, 9)])
    assert mixed["ceiling_within_5pct"] == pytest.approx((1 + 0.9545) / 2, abs=1e-4)
    assert mixed["max_relative_se"] == pytest.approx(0.025)
    assert measurement_ceiling([row(40.0, 4.0, 4)], band=0.1)["ceiling_within_10pct"] == pytest.approx(0.9545, abs=1e-4)
