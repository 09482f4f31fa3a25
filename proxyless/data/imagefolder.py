"""ImageFolder datasets: `ROOT/<class>/*.{jpg,jpeg,png}`, decoded once into a cached array.

Layouts: `ROOT/train/` with `ROOT/test/` (or `ROOT/val/`) gives both splits; otherwise `ROOT` is
the training set and a fixed 10% of it (independent of the user's seed) is held out as the test set.

Images of any size and mode are converted to RGB and stored as `(N, S, S, 3)` uint8 squares with
S = `transforms.stored_size(image_size)`: for `image_size <= 64` the whole image is resized to
S x S; above that the shorter side is resized to S and the center S x S crop kept. Undecodable
files are skipped with one warning; the decoded array lives in the cache directory, memory-mapped.
"""

from __future__ import annotations

import os
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .arrays import Part, RawData
from .cache import cache_key, cached_images
from .errors import DataError
from .transforms import SMALL_IMAGE_MAX, stored_size

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TEST_DIRS = ("test", "val")
HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 0  # fixed, so the held-out test set does not move with the training seed
CACHE_VERSION = 2  # 2: 16-bit grey PNGs scaled to 8 bits (version 1 stored them clipped to white)
DECODE_CHUNK = 256
# What PIL raises on damaged or non-image files (its plugins are not consistent about it).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error,
                 Image.DecompressionBombError)
SIXTEEN_BIT_GREY = ("I", "I;16", "I;16B", "I;16L")  # how PIL opens 16-bit greyscale PNGs


@dataclass(frozen=True)
class DecodeSpec:
    """How files become stored squares: side `size`; `squash` resizes the whole image to it."""

    size: int
    squash: bool


@dataclass(frozen=True)
class FolderListing:
    """The image files of one ImageFolder directory, sorted by class then name."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]
    stats: tuple[tuple[int, int], ...]  # (size in bytes, mtime in ns) per file, for the cache key


def image_files(class_dir: Path) -> list[os.DirEntry]:
    """Image files directly in `class_dir`, sorted by name (hidden files ignored)."""
    return sorted((e for e in os.scandir(class_dir) if e.is_file() and not e.name.startswith(".")
                   and e.name.lower().endswith(IMAGE_EXTENSIONS)), key=lambda e: e.name)


def list_folder(root: Path) -> FolderListing:
    """Scan `root/<class>/*` and check every class folder has images."""
    if not root.is_dir():
        raise DataError(f"data directory '{root}' does not exist or is not a directory; pass "
                        "'sample', a CIFAR-10 python directory, or ROOT/<class>/*.jpg")
    class_dirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                        key=lambda p: p.name)
    entries = [image_files(d) for d in class_dirs]
    if not any(entries):
        raise DataError(f"data directory '{root}' has no class folders with images "
                        "(*.jpg, *.jpeg, *.png); expected ROOT/<class>/*.jpg")
    for class_dir, found in zip(class_dirs, entries):
        if not found:
            raise DataError(f"class folder '{class_dir}' has no images (*.jpg, *.jpeg, *.png); "
                            "add images to it or remove it")
    flat = [(label, e) for label, found in enumerate(entries) for e in found]
    stats = tuple((st.st_size, st.st_mtime_ns) for st in (e.stat() for _, e in flat))
    return FolderListing(root, tuple(d.name for d in class_dirs),
                         tuple(Path(e.path) for _, e in flat), tuple(label for label, _ in flat), stats)


def decode_image(path: Path, spec: DecodeSpec) -> np.ndarray:
    """Decode one file to an RGB `(spec.size, spec.size, 3)` uint8 array."""
    side = spec.size
    with Image.open(path) as img:
        img.draft("RGB", (side, side))  # JPEG only: decode at a reduced scale >= side, much faster
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode in SIXTEEN_BIT_GREY:  # keep the top 8 bits; convert("RGB") would clip them to white
            img = img.convert("I").point(lambda v: v / 256).convert("L")
        img = img.convert("RGB")
    if spec.squash:
        img = img.resize((side, side), Image.Resampling.BILINEAR)  # PIL resize antialiases
    else:
        scale = side / min(img.size)
        width, height = max(side, round(img.width * scale)), max(side, round(img.height * scale))
        img = img.resize((width, height), Image.Resampling.BILINEAR)
        left, top = (width - side) // 2, (height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    return np.asarray(img, dtype=np.uint8)  # (S, S, 3)


def try_decode(path: Path, spec: DecodeSpec) -> np.ndarray | None:
    """`decode_image`, or None when the file is damaged or not an image."""
    try:
        return decode_image(path, spec)
    except DECODE_ERRORS:
        return None


def decode_into(listing: FolderListing, spec: DecodeSpec, out: np.ndarray,
                progress: bool) -> np.ndarray:
    """Decode every file into `out` (N, S, S, 3) -> labels (N,) int64, -1 where undecodable."""
    labels = np.array(listing.labels, dtype=np.int64)
    files = listing.files
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, \
            tqdm(total=len(files), unit="img", desc=f"decoding {listing.root.name}",
                 disable=not progress) as bar:
        for start in range(0, len(files), DECODE_CHUNK):  # chunks bound the pending results
            chunk = files[start:start + DECODE_CHUNK]
            for i, image in enumerate(pool.map(try_decode, chunk, [spec] * len(chunk)), start):
                if image is None:
                    labels[i] = -1
                else:
                    out[i] = image
            bar.update(len(chunk))
    return labels


def load_folder(root: Path, spec: DecodeSpec, cache_dir: Path,
                progress: bool) -> tuple[FolderListing, Part]:
    """List, decode (or reuse the cache) and drop undecodable files of one directory."""
    listing = list_folder(root)
    header = {"version": CACHE_VERSION, "root": str(root.resolve()),
              "size": spec.size, "squash": spec.squash}
    rows = ((str(f.relative_to(root)), *stat, label)
            for f, stat, label in zip(listing.files, listing.stats, listing.labels))
    shape = (len(listing.files), spec.size, spec.size, 3)
    images, labels = cached_images(cache_dir / "imagefolder", cache_key(header, rows), shape,
                                   lambda out: decode_into(listing, spec, out, progress))
    warn_skipped(listing, labels)
    return listing, Part(images, labels, np.flatnonzero(labels >= 0))


def warn_skipped(listing: FolderListing, labels: np.ndarray) -> None:
    """One warning for all undecodable files; DataError if none could be decoded."""
    bad = np.flatnonzero(labels < 0)
    if len(bad) == len(labels):
        raise DataError(f"none of the {len(labels)} images in '{listing.root}' could be decoded "
                        f"(first: '{listing.files[0]}'); check that they are JPEG/PNG files")
    if len(bad):
        warnings.warn(f"skipped {len(bad)} of {len(labels)} images in '{listing.root}' that could "
                      f"not be decoded (first: '{listing.files[bad[0]]}'); delete or replace them",
                      stacklevel=2)


def hold_out(part: Part, fraction: float = HOLDOUT_FRACTION) -> tuple[Part, Part]:
    """Split one part into (train, test) with a fixed-seed permutation."""
    if len(part.indices) < 2:
        raise DataError("an ImageFolder without train/ and test/ subfolders needs at least 2 "
                        "decodable images to hold out a test split; add images")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(len(part.indices))
    n_test = max(1, round(fraction * len(part.indices)))
    test, train = np.sort(part.indices[order[:n_test]]), np.sort(part.indices[order[n_test:]])
    return Part(part.images, part.labels, train), Part(part.images, part.labels, test)


def load_image_folder(root: Path, image_size: int, cache_dir: Path, progress: bool) -> RawData:
    """Decode an ImageFolder dataset (either layout) for networks taking `image_size` px."""
    spec = DecodeSpec(stored_size(image_size), squash=image_size <= SMALL_IMAGE_MAX)
    test_dir = next((root / n for n in TEST_DIRS if (root / n).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        train_listing, train = load_folder(root / "train", spec, cache_dir, progress)
        test_listing, test = load_folder(test_dir, spec, cache_dir, progress)
        if test_listing.classes != train_listing.classes:
            raise DataError(f"'{test_dir}' has classes {list(test_listing.classes)} but "
                            f"'{root / 'train'}' has {list(train_listing.classes)}; "
                            "give both the same class folders")
        how = f"train/ and {test_dir.name}/"
    else:
        train_listing, whole = load_folder(root, spec, cache_dir, progress)
        train, test = hold_out(whole)
        how = f"test = fixed {HOLDOUT_FRACTION:.0%} held out of the same folder"
    description = (f"ImageFolder '{root}' ({len(train.indices)} train / {len(test.indices)} "
                   f"test, {how}, {len(train_listing.classes)} classes)")
    return RawData(train, test, train_listing.classes, description)
