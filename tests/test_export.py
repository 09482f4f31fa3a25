"""`proxyless export`: ONNX, TorchScript and torch.export files that match the eager network, at any batch."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import tiny32_space
from proxyless.arch import Arch, save_arch
from proxyless.cli import main
from proxyless.export import SUFFIXES, ExportError, export_net, format_of, load_trained, read_exported
from proxyless.infra.checkpoint import save_checkpoint, save_weights
from proxyless.net import build_net
from proxyless.zoo import get_zoo_arch

SPACE = tiny32_space()
ARCH = Arch.from_strings(SPACE, ["mb_k3_e3", "mb_k5_e6", "mb_k5_e6", "mb_k3_e3"], name="tiny")
OTHER = Arch.from_strings(SPACE, ["mb_k5_e6", "mb_k3_e3", "mb_k3_e3", "mb_k5_e6"], name="other")


def trained_net(arch=ARCH, seed=0):
    """A net with random weights and non-trivial BN statistics, as after training."""
    torch.manual_seed(seed)
    net = build_net(arch)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """What `proxyless train` leaves: arch.json, weights.safetensors and checkpoint.pt (+ another net's weights)."""
    path = tmp_path_factory.mktemp("trained")
    save_arch(ARCH, path / "arch.json")
    net = trained_net()
    save_weights(net, path / "weights.safetensors")
    save_checkpoint({"arch": ARCH.to_dict(), "model": net.state_dict(), "epoch": 1}, path / "checkpoint.pt")
    save_weights(trained_net(OTHER), path / "other.safetensors")
    save_checkpoint({"arch": OTHER.to_dict(), "model": trained_net(OTHER).state_dict()}, path / "other.pt")
    return path


def run_cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse usage errors
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def export_argv(run_dir, fmt, *extra, weights="weights.safetensors"):
    return ["export", "--arch", run_dir / "arch.json", "--weights", run_dir / weights, "--format", fmt, *extra]


def eager(x):
    with torch.no_grad():
        return trained_net()(x)


def test_onnx_export_runs_in_onnxruntime_at_any_batch_and_a_failed_check_keeps_the_file(run_dir, tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "net.onnx"
    code, printed, _ = run_cli(capsys, *export_argv(run_dir, "onnx", "--out", out, "--verify-onnxruntime"))
    assert code == 0 and f"wrote {out}" in printed and "max abs diff to eager" in printed
    record = json.loads((tmp_path / "export.json").read_text())["exports"]["net.onnx"]
    assert record["format"] == "onnx" and record["checked_with"] == "onnxruntime" and record["input_size"] == 32
    assert record["checked_batches"] == [2, 3] and record["torch"] == torch.__version__
    assert 0 < record["max_abs_diff"] <= record["tolerance"] == 1e-4  # onnxruntime folds BN: close, not identical

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"  # the dimension is symbolic in the file
    x = torch.randn(7, 3, 32, 32)  # neither 2 nor 3
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(logits, eager(x).numpy(), atol=1e-4)

    before, record_before = out.read_bytes(), (tmp_path / "export.json").read_text()
    argv = export_argv(run_dir, "onnx", "--out", out, "--verify-onnxruntime", "--tolerance", "0")
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "differs from the eager model by" in err and "above --tolerance 0" in err
    assert out.read_bytes() == before and (tmp_path / "export.json").read_text() == record_before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    code, printed, _ = run_cli(capsys, "latency", "measure", "--exported", out, "--batch-size", "4", "--rounds", "2")
    assert code == 0 and "net.onnx: " in printed and "(onnxruntime, batch 4, " in printed and "input 32 px" in printed


@pytest.mark.parametrize("fmt, weights, suffix", [
    ("torchscript", "weights.safetensors", ".torchscript.pt"),
    ("torch-export", "checkpoint.pt", ".pt2"),
])
def test_reloaded_file_matches_eager_and_can_be_timed(run_dir, tmp_path, capsys, fmt, weights, suffix):
    weights_copy = tmp_path / weights
    weights_copy.write_bytes((run_dir / weights).read_bytes())
    code, printed, _ = run_cli(capsys, "export", "--arch", run_dir / "arch.json", "--weights", weights_copy,
                               "--format", fmt, "--batch-size", "1")
    out = tmp_path / f"model{suffix}"  # default: beside the weights
    assert code == 0 and f"wrote {out}" in printed and format_of(out) == fmt
    record = json.loads((tmp_path / "export.json").read_text())["exports"][out.name]
    assert record["max_abs_diff"] <= 1e-4 and record["export_batch"] == 2  # batch 1 is traced at 2
    x = torch.randn(5, 3, 32, 32)
    torch.testing.assert_close(read_exported(out)(x), eager(x), atol=1e-5, rtol=0)

    code, printed, _ = run_cli(capsys, "latency", "measure", "--exported", out, "--rounds", "2", "--threads", "1")
    assert code == 0 and f"{out.name}: " in printed and f"({fmt}, torch-cpu, batch 1, " in printed


def test_python_api_refuses_a_file_that_does_not_match(run_dir, tmp_path, monkeypatch):
    net = load_trained(ARCH, run_dir / "checkpoint.pt")
    result = export_net(net, "torchscript", tmp_path / "a.torchscript.pt", batch_size=3)
    assert result.max_abs_diff == 0.0 and result.checked_batches == (3, 4) and not result.dynamic_batch

    import proxyless.export as export

    monkeypatch.setattr(export, "load_exported", lambda data, fmt: (lambda x: net(x) + 1e-3))
    with pytest.raises(ExportError, match="differs from the eager model by 0.001"):
        export_net(net, "torchscript", tmp_path / "b.torchscript.pt")
    assert not (tmp_path / "b.torchscript.pt").exists()


def _bad_inputs(run_dir, tmp_path):
    """name -> (argv, text the one-line error must contain)."""
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    return {
        "missing arch": (["export", "--arch", tmp_path / "nope.json", "--weights", run_dir / "weights.safetensors",
                          "--format", "onnx"], "does not exist"),
        "missing weights": (export_argv(run_dir, "onnx", weights="nope.safetensors"), "does not exist"),
        "weights of another net": (export_argv(run_dir, "torchscript", weights="other.safetensors"),
                                   "weights of another architecture ("),
        "not a weights file": (export_argv(run_dir, "torchscript", weights="arch.json"),
                               "expected weights.safetensors or a training checkpoint.pt"),
        "checkpoint of another net": (export_argv(run_dir, "torchscript", weights="other.pt"),
                                      "saved for a different architecture"),
        "unknown format": (export_argv(run_dir, "tflite"), "invalid choice: 'tflite'"),
        "suffix of another format": (export_argv(run_dir, "torch-export", "--out", tmp_path / "m.onnx"),
                                     "would be read back as onnx"),
        "negative tolerance": (export_argv(run_dir, "torchscript", "--tolerance", "-1"), "--tolerance must be"),
        "unreadable exported file": (["latency", "measure", "--exported", tmp_path / "junk.pt2", "--image-size", "32"],
                                     "cannot load it as torch-export"),
        "exported file without its size": (["latency", "measure", "--exported", tmp_path / "junk.pt2"],
                                           "needs --image-size"),
        "missing exported file": (["latency", "measure", "--exported", tmp_path / "nope.pt2"], "does not exist"),
    }


@pytest.mark.parametrize("case", ["missing arch", "missing weights", "weights of another net", "not a weights file",
                                  "checkpoint of another net", "unknown format", "suffix of another format",
                                  "negative tolerance", "unreadable exported file", "exported file without its size",
                                  "missing exported file"])
def test_bad_input_is_one_line_exit_2(case, run_dir, tmp_path, capsys):
    argv, message = _bad_inputs(run_dir, tmp_path)[case]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1 and len(err) < 400, err
    assert not list(tmp_path.glob("model*"))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "torch-export"])
def test_tree_cell_net_exports_matching_eager(tmp_path, fmt):
    """The proxyless_cifar cells (grouped conv + channel shuffle, channel split, branch BN, dilated and separable
    convs, pooling, zero-padded shortcuts) on one block per stage, so that the export stays quick."""
    zoo = get_zoo_arch("proxyless_cifar")
    arch = replace(zoo, backbone=replace(zoo.backbone, blocks_per_stage=1), cells=zoo.cells[::18])
    torch.manual_seed(0)
    net = build_net(arch)
    for module in net.modules():  # BN statistics of a batch, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        net.train()(torch.randn(8, 3, 32, 32))
    result = export_net(net.eval(), fmt, tmp_path / f"tree{SUFFIXES[fmt]}", verify_onnxruntime=True)
    assert result.input_size == 32 and result.max_abs_diff <= result.tolerance
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(read_exported(tmp_path / f"tree{SUFFIXES[fmt]}")(x), net(x), atol=1e-4)
