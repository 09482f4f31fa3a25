"""In-memory (or memory-mapped) image arrays and the dataset that serves them."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DataError
from .transforms import Transform


@dataclass(frozen=True, eq=False)
class Part:
    """Decoded images of one split; only the rows in `indices` belong to it."""

    images: np.ndarray  # (N, S, S, 3) uint8, possibly a read-only memmap
    labels: np.ndarray  # (N,) int64
    indices: np.ndarray  # (M,) int64 rows of `images` in this split


@dataclass(frozen=True, eq=False)
class RawData:
    """A source decoded to arrays, before train/valid splitting and transforms."""

    train: Part
    test: Part
    classes: tuple[str, ...]
    description: str


class ArrayDataset(Dataset):
    """Items `(float32 (3, H, W), int label)`: a row of `images` through `transform`.

    `__getitem__` is an array slice plus a few tensor ops, so epochs are not bound by decoding.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                 transform: Transform) -> None:
        self.images = images
        self.labels = labels
        self.indices = indices
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        row = int(self.indices[i])
        img = torch.from_numpy(np.array(self.images[row]))  # (S, S, 3) uint8, copied off the memmap
        return self.transform(img.permute(2, 0, 1).contiguous()), int(self.labels[row])


def check_valid_size(valid_size: int | float) -> None:
    """Reject a valid_size that is not a count >= 0 or a fraction in [0, 1)."""
    if isinstance(valid_size, bool) or not isinstance(valid_size, Real):
        raise DataError(f"valid_size must be a count or a fraction in (0, 1), got {valid_size!r}")
    if valid_size < 0:
        raise DataError(f"valid_size {valid_size} is negative; use 0 for no validation split")
    if not isinstance(valid_size, Integral) and valid_size >= 1:
        raise DataError(f"valid_size {valid_size} is a fraction outside (0, 1); "
                        "pass a fraction like 0.1 or a whole number of images")


def count_valid(valid_size: int | float, n: int) -> int:
    """Number of held-out images: an int is a count, a float in (0, 1) a fraction of `n`."""
    check_valid_size(valid_size)
    if isinstance(valid_size, Integral):
        count = int(valid_size)
    else:
        count = max(1, round(valid_size * n)) if valid_size > 0 else 0
    if count >= n:
        raise DataError(f"valid_size {valid_size} leaves no training images (there are {n}); "
                        "use a smaller --valid-size")
    return count


def split_valid(indices: np.ndarray, valid_size: int | float,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of `indices` -> (train indices, valid indices), both sorted."""
    n_valid = count_valid(valid_size, len(indices))
    order = np.random.default_rng(seed).permutation(len(indices))
    return np.sort(indices[order[n_valid:]]), np.sort(indices[order[:n_valid]])
