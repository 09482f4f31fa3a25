"""Infrastructure the pipeline stands on, free of any search or network code.

    atomic        files written to a temporary and renamed over the target; one-line JSON errors
    checkpoint    checkpoints that load without running code; safetensors weights
    signals       Ctrl-C / SIGTERM as a request to stop after the current step
    distributed   torchrun: ranks, sharded batches, collectives, keyed RNG and its save/restore
    device        --device names to torch devices
    metrics       the per-epoch metrics log (CSV + JSON lines) and top-k counts
    tensorboard   the same rows as TensorBoard scalars (optional install)
    run_files     reading a run directory back (metrics, α history, arch, settings, latency)
    extras        optional packages, or one line naming their pip install
    engine        the resumable-run engine every long job runs on (ResumableRun, Totals)
    settings      run directories and the resume contract (saved settings win, differences named)
"""

from proxyless.infra.atomic import atomic_torch_save, atomic_write, atomic_write_text, read_json, remove_stale_temps
from proxyless.infra.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state,
    load_weights,
    save_checkpoint,
    save_weights,
)
from proxyless.infra.device import resolve_device
from proxyless.infra.distributed import Dist, RanksDisagree, keyed_generator, restore_rng, rng_states
from proxyless.infra.engine import ResumableRun, Totals
from proxyless.infra.extras import MissingExtra, require
from proxyless.infra.metrics import MetricsLog, run_logs, topk_correct
from proxyless.infra.run_files import RunFiles, read_run
from proxyless.infra.settings import OpenedRun, open_run, prepare_run_dir, resume_changes
from proxyless.infra.signals import Interrupted, StopSignals, stop_signals

__all__ = [
    "CheckpointError",
    "Dist",
    "Interrupted",
    "MetricsLog",
    "MissingExtra",
    "OpenedRun",
    "RanksDisagree",
    "ResumableRun",
    "RunFiles",
    "StopSignals",
    "Totals",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_text",
    "keyed_generator",
    "load_checkpoint",
    "load_state",
    "load_weights",
    "open_run",
    "prepare_run_dir",
    "read_json",
    "read_run",
    "remove_stale_temps",
    "require",
    "resolve_device",
    "restore_rng",
    "resume_changes",
    "rng_states",
    "run_logs",
    "save_checkpoint",
    "save_weights",
    "stop_signals",
    "topk_correct",
]
