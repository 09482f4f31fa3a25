"""Run CLI jobs side by side, one thread each, and keep what each cost (wall time, peak RSS).

A benchmark that trains many networks on a small machine runs them in `lanes` parallel processes,
each pinned to one thread (`OMP_NUM_THREADS=1`), so that every job sees the same conditions: one
core, a neighbour on the other. A job whose run directory already holds `result.json` is skipped,
one with a checkpoint is resumed, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from proxyless.infra.atomic import atomic_write_text


@dataclass
class Job:
    """One `python -m proxyless ...` run writing into `out`, and the flags that resume it."""

    name: str
    args: list[str]
    out: Path
    resume_args: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return (self.out / "result.json").exists()

    def command(self) -> list[str]:
        base = [sys.executable, "-m", "proxyless"]
        if (self.out / "checkpoint.pt").exists() and self.resume_args:
            return base + self.resume_args
        return base + self.args + ["--out", str(self.out), "--overwrite", "--no-progress"]


def run_jobs(jobs: list[Job], lanes: int, records: Path, threads: int = 1,
             until: str | None = None) -> dict[str, dict]:
    """Run the unfinished `jobs`, `lanes` at a time, `threads` each; returns {name: {wall_s, max_rss_mb, resumed}}.

    Each finished job's record is written to `records/<name>.json`, with when it started and ended (so a
    benchmark can tell which jobs ran side by side); a job that failed stops the benchmark with its
    log's last lines. With `until` (a job's name), once that job has finished the jobs still running are
    stopped (SIGTERM: a `proxyless` command saves a checkpoint and exits) and no other job starts, so the
    caller has a quiet machine; a later call resumes them from their checkpoints.
    """
    records.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending = [job for job in jobs if not job.done]
    # the Popen objects stay referenced: one dropped while its child runs goes on subprocess's list of
    # children that the next Popen() reaps, and wait4(-1) below would never see that child finish
    running: dict[int, tuple[Job, float, bool, subprocess.Popen, float]] = {}
    while pending or running:
        while pending and len(running) < lanes:
            job = pending.pop(0)
            job.out.parent.mkdir(parents=True, exist_ok=True)
            resumed = (job.out / "checkpoint.pt").exists() and bool(job.resume_args)
            log = open(records / f"{job.name}.log", "a")
            process = subprocess.Popen(job.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
            log.close()
            running[process.pid] = (job, time.perf_counter(), resumed, process, time.time())
            print(f"  started {job.name}{' (resumed)' if resumed else ''}", flush=True)
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        job, started, resumed, process, started_unix = running.pop(pid)
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        if os.waitstatus_to_exitcode(status) != 0:
            tail = (records / f"{job.name}.log").read_text().splitlines()[-5:]
            raise SystemExit(f"job {job.name} failed:\n" + "\n".join(tail))
        record = {"wall_s": time.perf_counter() - started, "max_rss_mb": usage.ru_maxrss / 1024, "resumed": resumed,
                  "started_unix": started_unix, "ended_unix": time.time()}  # which jobs ran side by side
        atomic_write_text(records / f"{job.name}.json", json.dumps(record, indent=2) + "\n")
        print(f"  finished {job.name} in {record['wall_s']:.0f} s", flush=True)
        if job.name == until:
            stop(running)
            pending.clear()
    return read_records(jobs, records)


def stop(running: dict[int, tuple]) -> None:
    """Ask every running job to stop (SIGTERM) and wait for each to exit; none of them is recorded."""
    for _, _, _, process, _ in running.values():
        process.send_signal(signal.SIGTERM)
    for pid, (job, _, _, process, _) in list(running.items()):
        _, status = os.waitpid(pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, as above
        print(f"  stopped {job.name} (exit {process.returncode}; resumes from its checkpoint)", flush=True)
    running.clear()


def read_records(jobs: list[Job], records: Path) -> dict[str, dict]:
    """The records of those of `jobs` that have finished (what `run_jobs` returns), running nothing."""
    return {job.name: json.loads((records / f"{job.name}.json").read_text()) for job in jobs
            if (records / f"{job.name}.json").exists()}


def baseline_rss_mb() -> float:
    """Peak RSS of a process that only imports torch and proxyless (what every job pays anyway)."""
    process = subprocess.Popen([sys.executable, "-c", "import torch, proxyless"],
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, _, usage = os.wait4(process.pid, 0)
    return usage.ru_maxrss / 1024
