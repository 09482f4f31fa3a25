"""Data-parallel search and training under a real `torchrun` (gloo on CPU), and the collectives under them."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from helpers import synthetic_table, tiny32_space
from proxyless.arch import Arch, save_arch
from proxyless.infra.distributed import Dist, RanksDisagree
from proxyless.latency.lut import save_lut
from test_faults import checkpoint_position, signal_after_progress

SPACE = tiny32_space()


def _collectives(rank: int, init_file: str, results) -> None:
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    dist = Dist(rank, 2)
    try:
        report = {"sum": dist.sum([rank + 1, 10.0]), "mean": dist.mean(float(rank)),
                  "broadcast": dist.broadcast(f"from {rank}"), "gather": dist.gather(rank * 3)}
        grads = dist.average_gradients([torch.full((3,), float(rank)), None])  # ranks 0 and 1: the mean is 0.5
        report["grad"], report["none"] = grads[0].tolist(), grads[1]
        dist.check_same([4, 2], "equal values")
        try:
            dist.check_same([rank], "the paths of a step")
            report["disagreement"] = None
        except RanksDisagree as err:
            report["disagreement"] = str(err)
        report["checks"] = dist.checks
        shards = dist.shard_indices(list(range(20)), 3, seed=0, epoch=1)
        report["shards"] = shards
        results[rank] = report
    finally:
        torch_dist.destroy_process_group()


def test_collectives_on_two_gloo_processes(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_collectives, args=(str(tmp_path / "init"), results), nprocs=2, join=True)
    for rank in (0, 1):
        report = results[rank]
        assert report["sum"] == [3.0, 20.0] and report["mean"] == 0.5 and report["broadcast"] == "from 0"
        assert report["gather"] == [0, 3] and report["grad"] == [0.5, 0.5, 0.5] and report["none"] is None
        assert "the paths of a step differ across ranks" in report["disagreement"]
        assert report["checks"] == 1  # the agreeing check counted, the disagreeing one raised
    # each global batch of 6 is split 3 + 3; together the ranks see one process's permutation
    alone = Dist().shard_indices(list(range(20)), 6, seed=0, epoch=1)
    together = [sorted(a + b) for a, b in zip(results[0]["shards"], results[1]["shards"])]
    assert together == [sorted(batch) for batch in alone]


def test_end_process_exits_with_the_code_and_the_output_flushed():
    """A torchrun worker of the command line ends with `end_process` (no interpreter teardown): what it
    printed, still in the buffer of a pipe, and what it logged must come out all the same."""
    code = ("import logging, sys; from proxyless.infra.distributed import end_process; "
            "logging.basicConfig(format='%(message)s'); print('results', end=''); "
            "logging.getLogger().warning('logged'); sys.stderr.write('partial'); end_process(3)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as a pipe is by default
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert (done.returncode, done.stdout) == (3, "results") and done.stderr == "logged\npartial"


def torchrun(*argv: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                           "-m", "proxyless", *argv], capture_output=True, text=True, timeout=300, env=env)


def kill_at_first_checkpoint(argv, out):
    """Start `torchrun ... proxyless ARGV --out OUT` and SIGKILL the whole job once a checkpoint exists."""
    job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                            "-m", "proxyless", *argv, "--out", str(out)], start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    workers = worker_pids(job.pid)
    os.killpg(job.pid, signal.SIGKILL)
    for pid in workers.values():  # in sessions of their own: they would go on writing the run directory
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    job.wait()


def signal_one_rank(argv, checkpoint, before, rank=1, signum=signal.SIGTERM) -> subprocess.CompletedProcess:
    """Start `torchrun ... proxyless ARGV`; once the checkpoint moved on from `before`, send `signum`
    to the process of `rank` only, and wait for the job to end."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "proxyless"]
    return signal_after_progress(torchrun + argv, lambda: checkpoint_position(checkpoint), before, signum,
                                 target=lambda pid: worker_pids(pid)[rank], env={**os.environ, "OMP_NUM_THREADS": "1"})


def worker_pids(torchrun_pid: int) -> dict[int, int]:
    """rank -> process of each worker of a torchrun process: its children, each in a session of its own
    (so killing torchrun's process group leaves them running), found through Linux's /proc."""
    workers = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"\nPPid:\t{torchrun_pid}\n" in (proc / "status").read_text():
                env = (proc / "environ").read_bytes().split(b"\0")
                rank = next(int(v[5:]) for v in env if v.startswith(b"RANK="))
                workers[rank] = int(proc.name)
        except (OSError, StopIteration):
            continue  # gone, or not a worker
    return workers


def search_argv(tmp_path, out, batch):
    """A tiny latency-targeted search (synthetic table: the target pulls α the same way in any run)."""
    return ["search", "--space", str(tmp_path / "space.json"), "--lut", str(tmp_path / "lut.json"),
            "--target-latency", "1.5ms", "--latency-weight", "1", "--no-measure", "--no-progress", "--epochs", "3",
            "--warmup-epochs", "1", "--batch-size", str(batch), "--limit-images", "256", "--valid-size", "0.1",
            "--arch-every", "1", "--arch-lr", "0.05", "--seed", "3", "--out", str(out)]


def final_probs(run):
    last = json.loads((run / "arch_history.jsonl").read_text().splitlines()[-1])
    return [torch.tensor(p) for p in last["probs"]]


def test_torchrun_search_matches_one_process_with_the_doubled_batch(tmp_path):
    (tmp_path / "space.json").write_text(json.dumps(SPACE.to_dict()))
    save_lut(synthetic_table(), tmp_path / "lut.json")  # nets of 1.12 to 3.36 ms
    two = torchrun(*search_argv(tmp_path, tmp_path / "two", 16))
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "proxyless", *search_argv(tmp_path, tmp_path / "one", 32)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert one.returncode == 0, one.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    # every weight step (8 per epoch: 256 images / (2 × 16)) and, after the warmup, every arch step had
    # its paths compared across the two processes
    assert [row["path_checks"] for row in rows] == [8, 16, 16]
    # Same global batches, paths and averaged gradients, but not bit-identical: BatchNorm normalises
    # each process's half batch by itself, and each process draws its own augmentations. So α is
    # compared with a tolerance: the two runs must differ by far less (< 0.01) than α moved (> 0.1).
    two_p, one_p = final_probs(tmp_path / "two"), final_probs(tmp_path / "one")
    moved = max(float((p - 1 / len(p)).abs().max()) for p in one_p)
    apart = max(float((a - b).abs().max()) for a, b in zip(two_p, one_p))
    assert moved > 0.1 and apart < 0.01, (moved, apart)
    arch_two = json.loads((tmp_path / "two" / "arch.json").read_text())
    arch_one = json.loads((tmp_path / "one" / "arch.json").read_text())
    assert arch_two["ops"] == arch_one["ops"]
    # only rank 0 wrote: one metrics row per epoch, one "wrote" line
    assert len(rows) == 3 and two.stdout.count("wrote ") == 1


def test_torchrun_train_resumes_after_a_kill_to_the_uninterrupted_result(tmp_path):
    save_arch(Arch(SPACE, (SPACE.layers()[0].candidates[0],) * SPACE.num_layers, "tiny"), tmp_path / "arch.json")
    argv = ["train", "--arch", str(tmp_path / "arch.json"), "--epochs", "3", "--batch-size", "32", "--no-progress"]
    straight = torchrun(*argv, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    result = json.loads((tmp_path / "straight" / "result.json").read_text())
    assert result["processes"] == 2 and 0 <= result["test_top1"] <= 1
    assert (tmp_path / "straight" / "weights.safetensors").is_file()
    assert len((tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()) == 3  # rank 0 alone logs
    assert len(torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["rng"]) == 2  # per process
    # kill the whole torchrun job once the first epoch is checkpointed, then resume it
    killed = tmp_path / "killed"
    kill_at_first_checkpoint(argv, killed)
    assert (killed / "checkpoint.pt").exists() and not (killed / "result.json").exists()
    resumed = torchrun("train", "--resume", str(killed), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    same = json.loads((killed / "result.json").read_text())
    assert same["test_top1"] == result["test_top1"] and same["test_loss"] == pytest.approx(result["test_loss"])
    # one process cannot continue what two started: each had its own augmentation RNG
    alone = subprocess.run([sys.executable, "-m", "proxyless", "train", "--resume", str(killed), "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 2 and "Traceback" not in alone.stderr
    assert alone.stderr.splitlines()[-1].endswith(
        "saved by 2 process(es), this run has 1; resume with --nproc-per-node 2")


def test_torchrun_search_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    (tmp_path / "space.json").write_text(json.dumps(SPACE.to_dict()))
    save_lut(synthetic_table(), tmp_path / "lut.json")
    argv = search_argv(tmp_path, tmp_path / "straight", 16)[:-2] + ["--checkpoint-every", "3"]
    straight = torchrun(*argv, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = tmp_path / "killed"
    kill_at_first_checkpoint(argv, killed)
    assert not (killed / "result.json").exists()
    # SIGTERM to rank 1 alone (a scheduler's preemption notice): both ranks stop after the same step
    at = checkpoint_position(killed / "checkpoint.pt")
    stopped = signal_one_rank(["search", "--resume", str(killed), "--no-progress"], killed / "checkpoint.pt", at)
    assert stopped.returncode != 0 and "interrupted by SIGTERM; saved" in stopped.stderr, stopped.stderr[-3000:]
    assert checkpoint_position(killed / "checkpoint.pt") > at
    resumed = torchrun("search", "--resume", str(killed), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # every rank's data position, RNG and running totals came back: the same α and metrics, exactly
    assert all(torch.equal(a, b) for a, b in zip(final_probs(killed), final_probs(tmp_path / "straight")))
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    again = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in again], abs=1e-6)
