"""Ctrl-C (SIGINT) and SIGTERM as a request to stop at the next safe point.

A long loop runs inside `stop_signals()`. The first signal only sets `StopSignals.signum`; the loop
reads it between steps, saves a checkpoint and raises `Interrupted`, so nothing done so far is lost
and the run resumes exactly. A second signal stops at once (KeyboardInterrupt), which the atomic
checkpoint writes make safe as well: the last checkpoint on disk stays whole.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

log = logging.getLogger("proxyless")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """A run stopped on a signal after saving its progress; `str()` says what was saved where."""

    def __init__(self, signum: int, saved: str) -> None:
        super().__init__(saved)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class StopSignals:
    """The first stop signal received (None until one arrives)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self, save: Callable[[], str], anywhere: Callable[[bool], bool] = bool) -> None:
        """After a stop signal: `save()` (which returns what it saved where) and raise `Interrupted`.
        `anywhere` combines the request over processes (`Dist.any`), so that all stop at the same step."""
        if anywhere(self.requested):
            raise Interrupted(self.signum or signal.SIGINT, save())  # SIGINT too on a process the signal missed

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # the second signal: stop now
        self.signum = signum
        log.warning("%s received: saving a checkpoint at the next step, then stopping "
                    "(press Ctrl-C again to stop at once)", signal.Signals(signum).name)


@contextlib.contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """Catch SIGINT and SIGTERM into a `StopSignals` while the block runs; the previous handlers
    are put back afterwards. Off the main thread (where Python allows no handlers) nothing is caught."""
    stop = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {signum: signal.signal(signum, stop.handle) for signum in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
