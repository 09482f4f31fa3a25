"""`python crash_child.py NAME N ARGS...`: run `proxyless ARGS...`, and SIGKILL this process halfway
through the N-th atomic write of a file called NAME (its temporary file half-written, not yet renamed).

Used by test_faults.py to kill a run at the worst moment, which a timed external kill rarely hits.
"""

import os
import signal
import sys
from pathlib import Path

import proxyless.infra.atomic as atomic
from proxyless.cli import main


def dying_write(name: str, nth: int):
    real_write = atomic.atomic_write
    seen = 0

    def atomic_write(path, write):
        nonlocal seen
        if Path(path).name != name:
            return real_write(path, write)
        seen += 1
        if seen < nth:
            return real_write(path, write)

        def write_half_then_die(tmp: Path) -> None:
            write(tmp)
            data = tmp.read_bytes()
            tmp.write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)

        return real_write(path, write_half_then_die)

    return atomic_write


if __name__ == "__main__":
    name, nth, *argv = sys.argv[1:]
    atomic.atomic_write = dying_write(name, int(nth))  # atomic_torch_save and atomic_write_text call it
    sys.exit(main(argv))
