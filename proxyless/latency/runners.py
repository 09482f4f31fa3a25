"""Timing forward calls of one module on a backend, the same way for a single op and a whole network.

    timer = make_timer(module, (1, 3, 224, 224), "onnxruntime", threads=2)   # built and warmed up
    timer(calls=5) -> median ms of 5 forward calls, after one untimed call

The untimed call matters when many modules are timed in turn: oneDNN keeps a bounded cache of
compiled kernels (1024 by default), which 20 networks overflow; without it, every call of a network
would pay for rebuilding its kernels (measured here: +40% on a 32 px network at batch 32).

Backends:
    torch-cpu     PyTorch eager on the CPU, inference mode, channels-last
    onnxruntime   the module exported to ONNX (torch.onnx, dynamo exporter), one CPU InferenceSession with
                  every graph optimisation on (BN folding, fusion) and a fixed thread count
    torch-cuda    PyTorch eager on the GPU, channels-last; each call timed with CUDA events
"""

from __future__ import annotations

import ctypes
import io
import logging
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from proxyless.errors import UserError
from proxyless.infra.extras import require

BACKENDS = ("torch-cpu", "onnxruntime", "torch-cuda")
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # the exporter needs the first two

Timer = Callable[[int], float]  # calls -> median milliseconds of one call


class BackendUnavailable(UserError):
    """A backend that this machine cannot run (no GPU, a missing package)."""


def check_backend(backend: str) -> None:
    """Raise a one-line error naming the fix when `backend` cannot run here."""
    if backend not in BACKENDS:
        raise UserError(f"unknown latency backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        for name in ONNX_PACKAGES:  # MissingExtra: pip install "proxyless[onnx]"
            require(name, "onnx", "backend onnxruntime")
    if backend == "torch-cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("backend torch-cuda needs a CUDA GPU, and torch sees none on this machine; "
                                 "use --backend torch-cpu or onnxruntime here")


@contextmanager
def steady_memory() -> Iterator[bool]:
    """While inside, glibc keeps freed memory in the process instead of returning it to the OS.

    A network running in a loop reuses its activation buffers; an op timed alone does not: by default
    glibc hands each freed multi-megabyte buffer back to the OS, and the next call pays a page fault per
    4 KiB touched. Measured here: an MBConv k3 e6 at 112 px took 5.5 ms that way and 2.8 ms with the
    memory kept, which made per-op sums of 224 px nets 1.5x the whole nets. Fixed thresholds put ops
    and whole networks in the same steady state, so whatever times them (`build_lut`, `measure_archs`)
    runs inside this.

    On leaving the outermost one, the kept memory is handed back (malloc_trim) and the thresholds are set
    to where glibc's own dynamic threshold settles in a process that frees large tensors: its maximum,
    32 MiB, and a trim threshold twice that. glibc has no way to turn that dynamic threshold back on, and
    its initial 128 KiB, fixed, would mmap every tensor above it afresh: training in the same process
    after a measurement then ran 2x slower (measured: tests/test_train.py 7 s -> 14 s per test). Yields
    False where there is no glibc (nothing is changed there).
    """
    libc = _glibc()
    with _ALLOCATOR.lock:
        _ALLOCATOR.depth += 1
        kept = libc is not None and _set_thresholds(libc, mmap=1 << 30, trim=1 << 31)
    try:
        yield kept
    finally:
        with _ALLOCATOR.lock:
            _ALLOCATOR.depth -= 1
            if libc is not None and _ALLOCATOR.depth == 0:
                _set_thresholds(libc, mmap=GLIBC_SETTLED_THRESHOLD, trim=2 * GLIBC_SETTLED_THRESHOLD)
                libc.malloc_trim(0)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """While inside, torch runs on `threads` threads (0: as it was); on leaving, the number it had before.

    A measurement times nets at its table's threads; the search or training it sits in (a measured derive,
    REINFORCE with measured rewards, a script's Python session) goes on at its own number afterwards.
    """
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# DEFAULT_MMAP_THRESHOLD_MAX of glibc's malloc.c on 64-bit: where its dynamic mmap threshold stops growing
GLIBC_SETTLED_THRESHOLD = 32 * 1024 * 1024


class _Allocator:
    """How many `steady_memory` scopes are open: glibc's allocator is one per process, so is this count."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0


_ALLOCATOR = _Allocator()


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None  # glibc, not musl


def _set_thresholds(libc: ctypes.CDLL, mmap: int, trim: int) -> bool:
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap) and libc.mallopt(M_TRIM_THRESHOLD, trim))


def make_timer(module: nn.Module, input_shape: tuple[int, ...], backend: str, threads: int = 0,
               warmup_calls: int = 3) -> Timer:
    """A warmed-up timer of `module` (put in eval mode) on inputs of `input_shape` (B, C, H, W)."""
    check_backend(backend)
    module = module.eval()
    if backend == "onnxruntime":
        run = _onnxruntime_call(export_onnx(module, torch.randn(input_shape)), input_shape, threads)
    else:
        run = _torch_call(module, input_shape, torch.device("cuda" if backend == "torch-cuda" else "cpu"))
    return _median_timer(run, _cuda_clock if backend == "torch-cuda" else _wall_clock, warmup_calls)


def onnx_timer(path: str | Path, input_shape: tuple[int, ...], threads: int = 0, warmup_calls: int = 3) -> Timer:
    """A warmed-up onnxruntime timer of an exported `.onnx` file (its first input gets `input_shape`)."""
    try:
        model = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"cannot read the ONNX file {path}: {err.strerror}") from None
    return _median_timer(_onnxruntime_call(model, input_shape, threads), _wall_clock, warmup_calls)


def loaded_timer(module: Callable[[torch.Tensor], torch.Tensor], input_shape: tuple[int, ...],
                 warmup_calls: int = 3) -> Timer:
    """A warmed-up CPU timer of a module loaded from an exported file (TorchScript, torch.export).

    It is called as it was saved, on a contiguous (B, C, H, W) input: a torch.export program cannot
    change mode or memory layout after export, so neither kind is put into eval mode or channels-last."""
    x = torch.randn(input_shape)

    @torch.inference_mode()
    def run() -> None:
        module(x)

    return _median_timer(run, _wall_clock, warmup_calls)


def export_onnx(module: nn.Module, example: torch.Tensor, dynamic_batch: bool = False) -> bytes:
    """`module` (eval mode) as ONNX bytes, exported by torch's default (dynamo) exporter."""
    for name in ONNX_PACKAGES[:2]:  # torch.onnx's exporter imports them
        require(name, "onnx", "ONNX export")
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    buffer = io.BytesIO()
    # torch.onnx warns about torchvision ops it cannot register, which we never use; onnxscript's
    # optimizer and onnx_ir log every pass at INFO, which the CLI shows
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (example,), buffer, input_names=["images"], output_names=["logits"],
                              dynamic_shapes=dynamic_shapes, dynamo=True, verbose=False)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    return buffer.getvalue()


def _torch_call(module: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> Callable[[], None]:
    module = module.to(device, memory_format=torch.channels_last)
    x = torch.randn(input_shape, device=device).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run() -> None:
        module(x)

    return run


# ONNX Runtime's worker threads spin while they wait for work; with as many threads as cores, a spinning
# worker and the caller fight for a core whenever anything else runs: measured here at two threads, whole
# 224 px nets swung 34-38% (coefficient of variation) from round to round with spinning and 8-13% without,
# and ran faster without. Sessions that time are made without it, and tables say so in their header.
ORT_SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}


def onnxruntime_session(model: bytes, threads: int = 0, profile_prefix: str | None = None):
    """A CPU `onnxruntime.InferenceSession` of ONNX bytes with every graph optimisation on (BN folding,
    fusion) and `ORT_SESSION_CONFIG`: the session both timing and `proxyless export --verify-onnxruntime`
    run; with `profile_prefix`, it records every kernel's time (`session.end_profiling()` writes them there)."""
    ort = require("onnxruntime", "onnx", "running an ONNX model")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    for key, value in ORT_SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for unreadable models
        raise UserError(f"onnxruntime cannot load the model: {str(err).splitlines()[0]}") from None


def _onnxruntime_call(model: bytes, input_shape: tuple[int, ...], threads: int) -> Callable[[], None]:
    session = onnxruntime_session(model, threads)
    name = session.get_inputs()[0].name
    feed = {name: torch.randn(input_shape).numpy()}
    return lambda: session.run(None, feed)


def _median_timer(run: Callable[[], None], clock: Callable[[Callable[[], None]], float], warmup_calls: int) -> Timer:
    """Warm `run` up, then time it: each sample is one untimed call and the median of `calls` timed ones."""
    for _ in range(warmup_calls):
        run()

    def timer(calls: int) -> float:
        run()  # untimed: rebuilds whatever another module evicted from the kernel caches
        return statistics.median(clock(run) for _ in range(calls))

    return timer


def _wall_clock(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3


def _cuda_clock(run: Callable[[], None]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)
