"""On-disk cache of decoded images: one `.npy` per dataset folder, memory-mapped on reuse.

Entries are published atomically (temp file + `os.replace`), labels first and images last, so a
decode interrupted at any point leaves no entry that looks complete.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

CACHE_ENV = "PROXYLESS_CACHE"


def default_cache_dir() -> Path:
    """`$PROXYLESS_CACHE`, else `~/.cache/proxyless`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "proxyless")


def cache_key(header: object, rows: Iterable[object]) -> str:
    """Stable hash of JSON-serializable records, streamed (a listing can have millions of rows)."""
    digest = hashlib.sha256()
    for record in itertools.chain([header], rows):
        digest.update(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


def cached_images(directory: Path, key: str, shape: tuple[int, ...],
                  fill: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Return (images memmap of `shape`, labels) for `key`, building them on a miss.

    `fill(images)` writes every row of a fresh uint8 memmap and returns its (N,) int64 labels.
    """
    images_path, labels_path = directory / f"{key}.npy", directory / f"{key}.labels.npy"
    if images_path.is_file() and labels_path.is_file():
        return np.load(images_path, mmap_mode="r"), np.load(labels_path)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_images, tmp_labels = (Path(f"{p}{suffix}") for p in (images_path, labels_path))
    try:
        images = np.lib.format.open_memmap(tmp_images, mode="w+", dtype=np.uint8, shape=shape)
        labels = fill(images)
        images.flush()
        del images  # close the memmap before renaming it
        with tmp_labels.open("wb") as f:
            np.save(f, labels)
        os.replace(tmp_labels, labels_path)
        os.replace(tmp_images, images_path)
    finally:
        tmp_images.unlink(missing_ok=True)
        tmp_labels.unlink(missing_ok=True)
    return np.load(images_path, mmap_mode="r"), np.load(labels_path)
