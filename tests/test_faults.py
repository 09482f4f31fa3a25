"""Fault injection on real `proxyless` processes: SIGKILL halfway through a checkpoint write, SIGKILL at
a random moment, and Ctrl-C (SIGINT); each time the run resumes from its last checkpoint and ends
exactly where the uninterrupted run ends. The kill moments come from a seeded RNG (FAULT_SEED) so that a
failure can be replayed.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import proxyless
from helpers import tiny32_space
from proxyless.arch import Arch, save_arch
from proxyless.data import load_splits
from proxyless.infra.checkpoint import load_checkpoint
from proxyless.infra.signals import Interrupted, stop_signals
from proxyless.latency.lut import load_lut
from proxyless.space import get_space
from test_data import write_cifar

FAULT_SEED = int(os.environ.get("FAULT_SEED", "7"))
CRASH_CHILD = Path(__file__).with_name("crash_child.py")
PROXYLESS = [sys.executable, "-m", "proxyless"]
TINY_SPACE = json.dumps(tiny32_space(("mb_k3_e3", "mb_k5_e3"), name="tiny-cifar").to_dict())  # JSON is YAML


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(TINY_SPACE)
    return path


# ---------------------------------------------------------------- the faults

def crash_mid_write(name: str, nth: int, argv: list[str]) -> subprocess.CompletedProcess:
    """Run `proxyless argv`, SIGKILLed halfway through its `nth` write of the file `name`."""
    source = str(Path(proxyless.__file__).parents[1])  # the child imports the proxyless under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(CRASH_CHILD), name, str(nth), *argv],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    return done


def signal_after_progress(argv: list[str], progress: Callable[[], object], before: object, signum: int,
                          delay: float = 0.0, target: Callable[[int], int] = lambda pid: pid,
                          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Start `argv`, wait until `progress()` (read from its saved files) differs from `before`, wait
    `delay` seconds more, send `signum` to `target(pid)` (the process itself unless told) and wait for
    the process to end."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and progress() == before:
        time.sleep(0.02)
    time.sleep(delay)
    assert process.poll() is None, "the run ended before the fault; make it longer"
    os.kill(target(process.pid), signum)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def checkpoint_position(path: Path) -> tuple[int, int] | None:
    """(epoch, step) of the checkpoint at `path`; reading never sees half a file (atomic writes)."""
    if not path.exists():
        return None
    state = load_checkpoint(path)
    return state["epoch"], state["step"]


def temporaries(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob(".*.tmp"))


def assert_interrupted_cleanly(done: subprocess.CompletedProcess, checkpoint: Path) -> None:
    """Exit 130 with one line that says where the progress was saved, and that checkpoint holds it."""
    assert done.returncode == 130, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr and "interrupted by SIGINT; saved" in last, last
    epoch, step = map(int, re.search(r"at epoch (\d+), step (\d+)", last).groups())
    assert checkpoint_position(checkpoint) == (epoch - 1, step)


# ---------------------------------------------------------------- search

def search_argv(space_file: Path, out: Path) -> list[str]:
    return ["search", "--space", str(space_file), "--no-progress", "--epochs", "3", "--warmup-epochs", "1",
            "--batch-size", "32", "--limit-images", "320", "--valid-size", "0.05", "--arch-every", "1",
            "--arch-lr", "0.05", "--checkpoint-every", "3", "--out", str(out)]


def alphas(run_dir: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_checkpoint(run_dir / "checkpoint.pt")["supernet"].items() if "alpha" in k}


def test_search_survives_kills_and_ctrl_c(tmp_path, space_file):
    rng = random.Random(FAULT_SEED)
    straight, run = tmp_path / "straight", tmp_path / "faulty"
    subprocess.run(PROXYLESS + search_argv(space_file, straight), check=True, capture_output=True, timeout=300)
    checkpoint = run / "checkpoint.pt"
    resume = PROXYLESS + ["search", "--resume", str(run), "--no-progress"]

    # 1. SIGKILL halfway through writing the second checkpoint: the first is still whole on disk
    crash_mid_write("checkpoint.pt", 2, search_argv(space_file, run))
    assert checkpoint_position(checkpoint) == (0, 3)
    [half_written] = temporaries(run)
    # 2. SIGKILL at a random moment after the resumed run saved once more
    at = checkpoint_position(checkpoint)
    signal_after_progress(resume, lambda: checkpoint_position(checkpoint), at, signal.SIGKILL, rng.uniform(0, 0.3))
    assert not half_written.exists()  # the resume cleaned up after the first kill
    assert checkpoint_position(checkpoint) > at
    # 3. Ctrl-C: the step in progress ends, its checkpoint is written, the process exits 130
    at = checkpoint_position(checkpoint)
    done = signal_after_progress(resume, lambda: checkpoint_position(checkpoint), at, signal.SIGINT,
                                 rng.uniform(0, 0.2))
    assert_interrupted_cleanly(done, checkpoint)
    assert "continue with `proxyless search --resume RUN_DIR`" in done.stderr
    assert not (run / "arch.json").exists()
    # 4. the last resume finishes where the uninterrupted run finished
    done = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run / "arch.json").read_text())["ops"] == json.loads((straight / "arch.json").read_text())["ops"]
    expected = alphas(straight)
    assert any(v.abs().max() > 0.05 for v in expected.values())  # α moved: the arch is not a tie-break
    for name, alpha in alphas(run).items():
        torch.testing.assert_close(alpha, expected[name], rtol=1e-5, atol=1e-6, msg=name)
    history = [json.loads(line) for line in (run / "arch_history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert temporaries(run) == []
    # 5. derive on the finished run gives the same arch.json, and the kept paths' weights
    done = subprocess.run(PROXYLESS + ["derive", str(run), "--inherit-weights", "--out",
                                       str(tmp_path / "derived.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "derived.json").read_text()) == json.loads((run / "arch.json").read_text())
    assert (run / "derived_weights.safetensors").is_file()


# ---------------------------------------------------------------- train

@pytest.fixture
def tiny_task(tmp_path: Path, space_file: Path) -> tuple[Path, Path]:
    """A real-format cifar-10-batches-py of 200 real CIFAR-10 images from the embedded sample, and an
    arch.json of the tiny space (so that a step takes milliseconds)."""
    test = load_splits("sample", 32, progress=False).test
    data = write_cifar(tmp_path / "data", np.asarray(test.images)[::5], np.asarray(test.labels)[::5])
    arch = save_arch(Arch.from_strings(get_space(str(space_file)), ["mb_k3_e3"] * 4, "tiny"), tmp_path / "tiny.json")
    return data, arch


def train_argv(task: tuple[Path, Path], out: Path) -> list[str]:
    data, arch = task
    return ["train", "--arch", str(arch), "--data", str(data), "--epochs", "3", "--batch-size", "8",
            "--checkpoint-every", "4", "--no-progress", "--out", str(out)]


def test_train_survives_kills_and_ctrl_c(tmp_path, tiny_task):
    rng = random.Random(FAULT_SEED + 1)
    straight, run = tmp_path / "straight", tmp_path / "faulty"
    subprocess.run(PROXYLESS + train_argv(tiny_task, straight), check=True, capture_output=True, timeout=300)
    checkpoint = run / "checkpoint.pt"
    resume = PROXYLESS + ["train", "--resume", str(run), "--no-progress"]

    # 1. SIGKILL halfway through writing the third checkpoint
    crash_mid_write("checkpoint.pt", 3, train_argv(tiny_task, run))
    assert checkpoint_position(checkpoint) == (0, 8) and len(temporaries(run)) == 1
    # 2. SIGKILL at a random moment, 3. Ctrl-C, each after the resumed run saved once more
    at = checkpoint_position(checkpoint)
    signal_after_progress(resume, lambda: checkpoint_position(checkpoint), at, signal.SIGKILL, rng.uniform(0, 0.1))
    assert checkpoint_position(checkpoint) > at
    at = checkpoint_position(checkpoint)
    done = signal_after_progress(resume, lambda: checkpoint_position(checkpoint), at, signal.SIGINT)
    assert_interrupted_cleanly(done, checkpoint)
    assert "continue with `proxyless train --resume RUN_DIR`" in done.stderr
    # 4. finished: the uninterrupted run's weights and metrics
    done = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = load_file(straight / "weights.safetensors")
    for name, tensor in load_file(run / "weights.safetensors").items():
        torch.testing.assert_close(tensor, expected[name], rtol=1e-5, atol=1e-6, msg=name)
    rows = [(directory / "metrics.csv").read_text().splitlines() for directory in (straight, run)]
    assert [r.split(",")[:3] for r in rows[0]] == [r.split(",")[:3] for r in rows[1]]  # epoch, loss, top-1
    assert temporaries(run) == []


# ---------------------------------------------------------------- lut build

def samples_taken(lut: Path) -> int | None:
    return sum(stat.count for stat in load_lut(lut).entries.values()) if lut.exists() else None


@pytest.mark.parametrize("method", ["isolated", "context"])
def test_lut_build_survives_kill_and_ctrl_c(tmp_path, space_file, method):
    lut = tmp_path / "lut.json"
    argv = ["lut", "build", "--space", str(space_file), "--batch-size", "1", "--threads", "1", "--no-progress",
            "--out", str(lut), "--method", method]

    # 1. SIGKILL halfway through saving the second round: the first round is whole on disk (in context, a
    # key is timed in every network of the round that has it, and on the reference's scale)
    crash_mid_write("lut.json", 2, argv)
    first_round = load_lut(lut)
    counts = {stat.count for stat in first_round.entries.values()}
    assert counts == {1} if method == "isolated" else min(counts) >= 1 and first_round.header["reference"]["ms"] > 0
    assert len(temporaries(tmp_path)) == 1
    # 2. Ctrl-C after one more round was saved: the samples so far are saved too (mid-round)
    done = signal_after_progress(PROXYLESS + argv, lambda: samples_taken(lut), samples_taken(lut), signal.SIGINT)
    assert done.returncode == 130, done.stderr[-2000:]
    assert re.search(r"interrupted by SIGINT; saved .*lut.json with \d+ of \d+ ops measured", done.stderr)
    saved = load_lut(lut)
    assert samples_taken(lut) > len(first_round.entries) and temporaries(tmp_path) == []
    # 3. resumed to the end: every op measured, none measured again from scratch
    done = subprocess.run(PROXYLESS + argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    final = load_lut(lut)
    assert set(final.entries) == set(first_round.entries) and final.header == saved.header
    for key, stat in saved.entries.items():
        assert final.entries[key].count >= stat.count, key


# ---------------------------------------------------------------- the stop flag itself

def test_stop_signals_set_a_flag_then_a_second_one_stops_at_once():
    previous = signal.getsignal(signal.SIGINT)
    with stop_signals() as stop:
        assert not stop.requested
        signal.raise_signal(signal.SIGTERM)  # a scheduler's notice: only noted, the loop decides when
        assert stop.signum == signal.SIGTERM
        with pytest.raises(Interrupted, match="saved it") as stopped:
            stop.check(lambda: "saved it")
        assert stopped.value.exit_code == 143 and stopped.value.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # the second signal does not wait for the loop
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous  # handlers are put back


def test_stop_signals_off_the_main_thread_catch_nothing():
    # the handler the process had, whatever it is: a shell starts background jobs with SIGINT ignored
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(stop_signals().__enter__().requested))
    thread.start()
    thread.join()
    assert seen == [False] and (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
