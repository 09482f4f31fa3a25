"""`proxyless plot RUN_DIR` on a real (tiny) search with a latency target and a real (tiny) training run."""

import json

import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from helpers import synthetic_table, tiny32_space
from proxyless.arch import Arch
from proxyless.cli import main
from proxyless.data import Splits
from proxyless.latency.lut import save_lut
from proxyless.latency.predict import LatencyModel
from proxyless.net import build_net
from proxyless.search.hardware import reachable
from proxyless.train import TrainConfig, Trainer

SPACE = tiny32_space()


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    (tmp / "space.json").write_text(json.dumps(SPACE.to_dict()))
    save_lut(synthetic_table(), tmp / "lut.json")
    fastest, slowest = reachable(LatencyModel(SPACE, synthetic_table()))
    code = main(["search", "--space", str(tmp / "space.json"), "--lut", str(tmp / "lut.json"),
                 "--target-latency", f"{(fastest + slowest) / 2:.4f}ms", "--no-measure", "--epochs", "3",
                 "--warmup-epochs", "1", "--batch-size", "32", "--limit-images", "320", "--valid-size", "0.1",
                 "--arch-every", "1", "--arch-lr", "0.05", "--no-progress", "--out", str(tmp / "run")])
    assert code == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def train_run(tmp_path_factory, sample_splits):
    full = sample_splits
    splits = Splits(Subset(full.train, range(0, 5000, 40)), None, Subset(full.test, range(0, 1000, 20)),
                    full.classes, 32, "tiny sample")
    arch = Arch.from_strings(SPACE, ["mb_k3_e3", "zero", "mb_k5_e6", "mb_k3_e3"], name="tiny")
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("train") / "run"
    Trainer(arch, build_net(arch), splits, TrainConfig(epochs=2, batch_size=32, progress=False)).run(out)
    return out


def png_size(path):
    with Image.open(path) as image:
        image.verify()  # a complete, uncorrupted PNG
    with Image.open(path) as image:
        return image.format, image.size


def test_plot_search_run_draws_alpha_arch_curves_and_latency(search_run, tmp_path, capsys):
    assert main(["plot", str(search_run), "--out", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out
    names = ["curves.png", "arch.png", "alpha_heatmap.png", "latency.png"]
    assert printed.splitlines() == [f"wrote {tmp_path / 'figs' / name}" for name in names]
    for name in names:
        kind, (width, height) = png_size(tmp_path / "figs" / name)
        assert kind == "PNG" and width >= 400 and height >= 200, (name, width, height)
    assert png_size(tmp_path / "figs" / "alpha_heatmap.png")[1][0] > png_size(tmp_path / "figs" / "latency.png")[1][0]


def test_plot_without_latency_target_or_arch_json_draws_the_latest_argmax(search_run, tmp_path, capsys):
    """Mid-search: no arch.json or latency.json yet, and rows without latency columns."""
    run = tmp_path / "partial"
    run.mkdir()
    for name in ("config.json", "arch_history.jsonl"):
        (run / name).write_text((search_run / name).read_text())
    rows = [json.loads(line) for line in (search_run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in row.items() if "latency" not in k}) + "\n"
                                               for row in rows))
    assert main(["plot", str(run)]) == 0
    assert [line.split("/")[-1] for line in capsys.readouterr().out.splitlines()] == [
        "curves.png", "arch.png", "alpha_heatmap.png"]


def test_plot_train_run_draws_curves_and_arch(train_run, capsys):
    assert main(["plot", str(train_run)]) == 0
    written = [f"wrote {train_run / 'curves.png'}", f"wrote {train_run / 'arch.png'}"]
    assert capsys.readouterr().out.splitlines() == written
    for name in ("curves.png", "arch.png"):
        kind, (width, height) = png_size(train_run / name)
        assert kind == "PNG" and width >= 400 and height >= 100


def test_plot_reads_metrics_csv_when_the_jsonl_is_gone(train_run, tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text((train_run / "metrics.csv").read_text())
    assert main(["plot", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {tmp_path / 'curves.png'}"]


@pytest.mark.parametrize("case, message", [
    ("empty", "has no metrics"),
    ("missing", "does not exist"),
    ("torn line", "line 2 is not valid JSON"),
])
def test_plot_bad_run_dir_is_one_line_exit_2(case, message, tmp_path, capsys):
    run = tmp_path / "run"
    if case != "missing":
        run.mkdir()
    if case == "torn line":
        (run / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 2.3}\n{"epoch": 2, "train_lo')
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not list(tmp_path.rglob("*.png"))
