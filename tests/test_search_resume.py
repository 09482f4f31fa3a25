"""SIGKILL a real `proxyless search` process mid-epoch, resume it, and get the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from proxyless.checkpoint import load_checkpoint

TINY_SPACE = """\
name: tiny-cifar
input_size: 32
stem_channels: 8
stem_stride: 2
first_block_channels: 8
stages:
  - {width: 8, depth: 2, stride: 2}
  - {width: 16, depth: 2, stride: 2}
candidates: [mb_k3_e3, mb_k5_e3]
feature_mix_channels: 32
num_classes: 10
"""


def search_cmd(tmp_path, out):
    return [sys.executable, "-m", "proxyless", "search", "--space", str(tmp_path / "space.yaml"), "--no-progress",
            "--epochs", "3", "--warmup-epochs", "1", "--batch-size", "32", "--limit-images", "320",
            "--valid-size", "0.05", "--arch-every", "1", "--arch-lr", "0.05", "--checkpoint-every", "3",
            "--out", str(out)]


def test_killed_search_resumes_to_the_same_arch(tmp_path):
    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    straight = tmp_path / "straight"
    subprocess.run(search_cmd(tmp_path, straight), check=True, capture_output=True, timeout=300)

    killed = tmp_path / "killed"
    process = subprocess.Popen(search_cmd(tmp_path, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:  # wait for a mid-epoch checkpoint of epoch 2
        if checkpoint.exists():
            try:
                state = load_checkpoint(checkpoint)
            except Exception:  # written atomically, so this only happens if the test reads a stale handle
                continue
            if state["epoch"] >= 1 and state["step"] > 0:
                break
        time.sleep(0.05)
    assert process.poll() is None, "the search finished before it could be killed; make it longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    at_kill = load_checkpoint(checkpoint)
    assert at_kill["step"] > 0 and at_kill["epoch"] < 3  # killed mid-epoch, before the end
    assert not (killed / "arch.json").exists()

    resumed = subprocess.run([sys.executable, "-m", "proxyless", "search", "--resume", str(killed), "--no-progress"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr

    arch_a = json.loads((straight / "arch.json").read_text())
    arch_b = json.loads((killed / "arch.json").read_text())
    assert arch_a["ops"] == arch_b["ops"]
    alphas_a = {k: v for k, v in load_checkpoint(straight / "checkpoint.pt")["supernet"].items() if "alpha" in k}
    alphas_b = {k: v for k, v in load_checkpoint(killed / "checkpoint.pt")["supernet"].items() if "alpha" in k}
    assert any(v.abs().max() > 0.05 for v in alphas_a.values())  # α moved: the arch is not a tie-break
    for name in alphas_a:
        torch.testing.assert_close(alphas_b[name], alphas_a[name], rtol=1e-5, atol=1e-6)
    history = [json.loads(line) for line in (killed / "arch_history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1, 2, 3]

    derived = subprocess.run([sys.executable, "-m", "proxyless", "derive", str(straight), "--inherit-weights",
                              "--out", str(tmp_path / "derived.json")], capture_output=True, text=True, timeout=120)
    assert derived.returncode == 0, derived.stderr[-2000:]
    assert json.loads((tmp_path / "derived.json").read_text()) == arch_a
    assert (straight / "derived_weights.safetensors").is_file()
