"""CIFAR-10 "python version" batches (`cifar-10-batches-py`), read without running pickled code.

The batches are pickles. A plain `pickle.load` would run whatever a tampered file asks for, so
`NumpyOnlyUnpickler` resolves only the few globals needed to rebuild numpy arrays and refuses
the rest.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import Part, RawData
from .errors import DataError

BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"

# (module, name) pairs an array pickle may reference. numpy 1.x writes `numpy.core.*`, numpy 2.x
# `numpy._core.*`; protocol 5 uses `_frombuffer`; Python 3 protocol <= 2 encodes bytes via
# `_codecs.encode`, which only converts text and cannot run code.
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else that needs a global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(f"refusing to unpickle {module}.{name}: a CIFAR-10 batch never needs "
                            "it, so the file may be tampered with; re-download the dataset")
        if module == "_codecs":
            return codecs.encode
        if module == "numpy":
            return getattr(np, name)
        submodule = module.rsplit(".", 1)[1]  # multiarray or numeric
        try:
            core = importlib.import_module(f"numpy._core.{submodule}")
        except ImportError:  # numpy < 2
            core = importlib.import_module(f"numpy.core.{submodule}")
        return getattr(core, name)


def is_batches_dir(path: Path) -> bool:
    """True if `path` holds the CIFAR-10 python batches."""
    return all((path / name).is_file() for name in (TRAIN_BATCHES[0], TEST_BATCH, META_FILE))


def find_batches_dir(path: Path) -> Path | None:
    """`path` itself or `path/cifar-10-batches-py` when it holds the batches, else None."""
    for candidate in (path, path / BATCHES_DIR):
        if candidate.is_dir() and is_batches_dir(candidate):
            return candidate
    return None


def read_pickle(path: Path) -> Any:
    """Unpickle `path` with `NumpyOnlyUnpickler` (byte strings stay bytes)."""
    if not path.is_file():
        raise DataError(f"CIFAR-10 file '{path}' is missing; re-download or re-extract the dataset")
    try:
        with path.open("rb") as f:
            return NumpyOnlyUnpickler(f, encoding="bytes").load()
    except DataError:
        raise
    except Exception as err:  # a damaged pickle can fail in many ways
        raise DataError(f"cannot read CIFAR-10 file '{path}' ({err}); "
                        "re-download the dataset") from err


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (images (N, 32, 32, 3) uint8, labels (N,) int64)."""
    batch = read_pickle(path)
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 \
            or data.dtype != np.uint8 or labels is None or len(labels) != len(data):
        raise DataError(f"'{path}' is not a CIFAR-10 batch (expected a dict with b'data' "
                        "(N, 3072) uint8 and N b'labels'); re-download the dataset")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64)


def read_classes(directory: Path) -> tuple[str, ...]:
    """Class names from `batches.meta`."""
    meta = read_pickle(directory / META_FILE)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not names:
        raise DataError(f"'{directory / META_FILE}' has no label_names; re-download the dataset")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def load_cifar(directory: Path) -> RawData:
    """Read a `cifar-10-batches-py` directory into arrays."""
    train = [read_batch(directory / name) for name in TRAIN_BATCHES]
    train_images = np.concatenate([images for images, _ in train])  # (50000, 32, 32, 3)
    train_labels = np.concatenate([labels for _, labels in train])
    test_images, test_labels = read_batch(directory / TEST_BATCH)
    classes = read_classes(directory)
    if max(train_labels.max(), test_labels.max()) >= len(classes) or min(
            train_labels.min(), test_labels.min()) < 0:
        raise DataError(f"'{directory}' has labels outside the {len(classes)} classes of "
                        f"{META_FILE}; re-download the dataset")
    description = (f"CIFAR-10 python batches in '{directory}' "
                   f"({len(train_images)} train / {len(test_images)} test)")
    return RawData(Part(train_images, train_labels, np.arange(len(train_images))),
                   Part(test_images, test_labels, np.arange(len(test_images))),
                   classes, description)
