"""Download and extract CIFAR-10 (python version) with an md5 check."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .cifar import BATCHES_DIR
from .errors import DataError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"


def download_cifar10(root: str | Path, *, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5,
                     progress: bool = True) -> Path:
    """Make sure `root/cifar-10-batches-py` exists and return it.

    Skips everything if the directory is already there. Otherwise downloads `url` to a temporary
    file, checks its md5 (DataError and the file is deleted on mismatch), renames it to
    `root/cifar-10-python.tar.gz`, and extracts it with tarfile's "data" filter (no absolute
    paths, `..`, or links leaving the folder). An archive already there with the right md5 is
    reused instead of downloaded again.
    """
    root = Path(root)
    target = root / BATCHES_DIR
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    archive = root / ARCHIVE_NAME
    if not (archive.is_file() and file_md5(archive) == md5):
        fetch(url, archive, md5, progress)
    extract(archive, target)
    return target


def file_md5(path: Path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: Path, md5: str, progress: bool) -> None:
    """Download `url` to a temp file next to `dest`, verify `md5`, then rename it to `dest`."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="CIFAR-10",
                      disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except OSError as err:  # urllib.error.URLError is an OSError
        tmp.unlink(missing_ok=True)
        raise DataError(f"could not download {url} ({err}); check the network, or download and "
                        f"extract it yourself into '{dest.parent}'") from err
    if digest.hexdigest() != md5:
        tmp.unlink(missing_ok=True)
        raise DataError(f"download of {url} has md5 {digest.hexdigest()}, expected {md5}; "
                        "the corrupt file was deleted, run again to retry")
    os.replace(tmp, dest)


def extract(archive: Path, target: Path) -> None:
    """Extract `archive` into a temp dir, then move its `target.name` folder to `target`."""
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="data")  # refuses absolute paths, `..`, devices
        extracted = staging / target.name
        if not extracted.is_dir():
            raise DataError(f"'{archive}' has no {target.name}/ folder; it is not the CIFAR-10 "
                            "python archive, delete it and download again")
        os.replace(extracted, target)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"cannot extract '{archive}' ({err}); "
                        "delete it and download again") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
