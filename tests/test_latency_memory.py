"""steady_memory: glibc keeps freed memory while latency is measured, and only then.

Observed for real through glibc's own counters: a 64 MiB malloc is served by mmap (mallinfo2's `hblks`
goes up) outside, where the threshold is glibc's settled 32 MiB, and from the heap while memory is kept.
"""

import ctypes

import pytest
import torch
from torch import nn

from proxyless.latency import measure
from proxyless.latency.measure import MeasureConfig, measure_archs
from proxyless.latency.runners import make_timer, steady_memory
from proxyless.zoo import get_zoo_arch

try:
    LIBC = ctypes.CDLL("libc.so.6")
except OSError:
    LIBC = None
if LIBC is not None and not hasattr(LIBC, "mallinfo2"):  # glibc >= 2.33
    LIBC = None

pytestmark = pytest.mark.skipif(LIBC is None, reason="needs glibc's mallopt and mallinfo2")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


if LIBC is not None:
    LIBC.mallinfo2.restype = MallInfo2
    LIBC.malloc.restype, LIBC.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    LIBC.free.argtypes = [ctypes.c_void_p]


def mmapped(size: int = 64 << 20) -> bool:
    """Whether glibc serves a `size`-byte malloc with its own mmap (the default) rather than from the heap."""
    before = LIBC.mallinfo2().hblks
    pointer = LIBC.malloc(size)
    served_by_mmap = LIBC.mallinfo2().hblks > before
    LIBC.free(pointer)
    return served_by_mmap


def test_memory_is_kept_inside_only_also_when_nested():
    with steady_memory() as kept:
        assert kept and not mmapped()
        with steady_memory():
            assert not mmapped()
        assert not mmapped()  # the inner scope left the outer one's settings alone
    assert mmapped()  # outside: above the settled 32 MiB threshold
    assert mmapped()  # and fixed: glibc's adaptive threshold would have risen after the first free
    assert not mmapped(16 << 20)  # below it: from the heap, as once glibc's own threshold has settled


def test_building_and_calling_a_timer_changes_nothing():
    with steady_memory():
        pass
    timer = make_timer(nn.Conv2d(3, 8, 3), (1, 3, 16, 16), "torch-cpu", threads=1, warmup_calls=1)
    timer(2)
    assert mmapped()


def test_measuring_keeps_memory_while_it_times_and_puts_the_defaults_back(monkeypatch):
    seen = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(mmapped())
            return x

    monkeypatch.setattr(measure, "build_net", lambda arch: Probe())  # timed instead of the arch's network
    config = MeasureConfig(calls_per_sample=1, warmup_calls=1, min_rounds=2, max_rounds=2)
    measure_archs([get_zoo_arch("mobilenetv2_0.35")], "torch-cpu", config, progress=False)
    assert seen and not any(seen)  # every timed call ran with freed memory kept
    assert mmapped()
