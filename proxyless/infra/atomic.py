"""Files: atomic writes (a temporary file beside the target, fsync, then a rename over it), so a
reader or a resumed run sees the old file or the new one, never half of one; and JSON reads whose
errors are one line.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger("proxyless")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then atomically move the result to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_stale_temps(path: str | Path) -> int:
    """Delete (and log) the temporary files a killed `atomic_write(path, ...)` left beside `path`;
    returns how many there were."""
    path = Path(path)
    stale = list(path.parent.glob(f".{path.name}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    if stale:
        log.info("removed %d half-written copy(ies) of %s that a killed run left", len(stale), path)
    return len(stale)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def read_json(path: Path, error: type[Exception], what: str) -> object:
    """Parse the JSON file `path`, raising `error` with one line that names the problem."""
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise error(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); check the file") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file; expected a {what} in JSON") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply to be a {what}; check the file") from None
