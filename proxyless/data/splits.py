"""`load_splits`: any supported source -> train / valid / test datasets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .arrays import ArrayDataset, Part, RawData, check_valid_size, split_valid
from .cache import default_cache_dir
from .cifar import load_cifar
from .download import download_cifar10
from .errors import DataError
from .imagefolder import load_image_folder
from .sample import load_sample
from .sources import FIXED_IMAGE_SIZE, Source, parse_source
from .transforms import Transform, build_transforms


@dataclass(frozen=True)
class Splits:
    """Datasets of one source. Items are `(float32 (3, H, W) normalized, int label)`.

    `train` is augmented when requested; `valid` (None when valid_size == 0) is held out of the
    training data and, like `test`, uses the evaluation transform.
    """

    train: Dataset
    valid: Dataset | None
    test: Dataset
    classes: tuple[str, ...]
    image_size: int
    source: str


def load_splits(source: str, image_size: int, *, valid_size: int | float = 0, seed: int = 0,
                augment: bool = True, cache_dir: str | Path | None = None,
                progress: bool = True) -> Splits:
    """Load `source` ('sample', a CIFAR-10 python dir, 'cifar10:DIR', or an ImageFolder root) for a
    network taking `image_size` px inputs.

    `valid_size`: images held out of training for validation, a count or a fraction in (0, 1),
    chosen by a permutation seeded with `seed`. ImageFolder decodes are cached under `cache_dir`
    (default `$PROXYLESS_CACHE` or `~/.cache/proxyless`).
    """
    if isinstance(image_size, bool) or not isinstance(image_size, Integral) or image_size < 1:
        raise DataError(f"image size {image_size!r} must be a positive whole number of pixels, "
                        "e.g. 32 or 224")
    check_valid_size(valid_size)  # fail before a long decode or download
    spec = parse_source(source)
    if spec.fixed_size and image_size != FIXED_IMAGE_SIZE:
        raise DataError(f"data source '{source}' has fixed 32×32 images but the architecture "
                        f"expects {image_size} px; use a 32 px search space (e.g. proxyless-cifar) "
                        "or an ImageFolder dataset")
    raw = load_raw(spec, image_size, Path(cache_dir) if cache_dir else default_cache_dir(),
                   progress)
    train_tf, eval_tf = build_transforms(image_size, augment)
    train_rows, valid_rows = split_valid(raw.train.indices, valid_size, seed)
    description = raw.description
    if len(valid_rows):
        description += f"; {len(valid_rows)} training images held out for validation"
    return Splits(train=dataset(raw.train, train_rows, train_tf),
                  valid=dataset(raw.train, valid_rows, eval_tf) if len(valid_rows) else None,
                  test=dataset(raw.test, raw.test.indices, eval_tf),
                  classes=raw.classes, image_size=int(image_size), source=description)


def check_limit(limit: int | None) -> None:
    """Refuse a `limit` no data could meet (not a whole number of 1 or more) before any image is decoded."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, Integral) or limit < 1):
        raise DataError(f"--limit-images must be a number of training images, 1 or more; got {limit!r}")


def limit_train(splits: Splits, limit: int | None, seed: int = 0) -> Splits:
    """`splits` with only `limit` of its training images (drawn with `seed`; valid and test whole), for a
    quick trial of a recipe; `None` keeps them all."""
    if limit is None:
        return splits
    check_limit(limit)
    if limit > len(splits.train):
        raise DataError(f"--limit-images must be in 1..{len(splits.train)} (the data's training images), "
                        f"got {limit!r}")
    keep = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(seed))[:limit]
    return replace(splits, train=Subset(splits.train, sorted(keep.tolist())),
                   source=f"{splits.source}; {limit} training images used")


def load_raw(spec: Source, image_size: int, cache_dir: Path, progress: bool) -> RawData:
    """Decode a parsed source into arrays."""
    if spec.kind == "sample":
        return load_sample()
    if spec.kind == "cifar-download":
        return load_cifar(download_cifar10(spec.path, progress=progress))
    if spec.kind == "cifar":
        return load_cifar(spec.path)
    return load_image_folder(spec.path, image_size, cache_dir, progress)


def dataset(part: Part, rows: np.ndarray, transform: Transform) -> ArrayDataset:
    """A dataset over `rows` of a part's arrays."""
    return ArrayDataset(part.images, part.labels, rows, transform)
