"""The embedded CIFAR-10 sample: 500 train + 100 test images per class, stored as original JPEGs.

The file is written by `tools/make_sample.py` (see its docstring for the format) and read here
without pickle. Decoding its 6,000 tiny JPEGs takes well under a second; the decoded arrays live as
long as the datasets that hold them.
"""

from __future__ import annotations

import io
from importlib import resources

import numpy as np
from PIL import Image

from .arrays import Part, RawData
from .errors import DataError

SAMPLE_FILE = "cifar10_sample.npz"


def decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Concatenated JPEG files + (N + 1) offsets -> (N, H, W, 3) uint8."""
    images = []
    for start, end in zip(offsets[:-1], offsets[1:]):
        with Image.open(io.BytesIO(blob[start:end].tobytes())) as img:
            images.append(np.asarray(img.convert("RGB")))  # (H, W, 3)
    return np.stack(images)


def load_sample() -> RawData:
    """Decode the embedded sample into arrays."""
    ref = resources.files(__package__).joinpath(SAMPLE_FILE)
    if not ref.is_file():
        raise DataError(f"the embedded sample {SAMPLE_FILE} is missing from proxyless.data; "
                        "reinstall proxyless or rebuild it with tools/make_sample.py")
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as npz:
        parts = {}
        for split in ("train", "test"):
            images = decode_jpegs(npz[f"{split}_jpeg"], npz[f"{split}_offsets"])
            parts[split] = Part(images, npz[f"{split}_labels"], np.arange(len(images)))
        classes = tuple(str(c) for c in npz["classes"])
    n_train, n_test = len(parts["train"].indices), len(parts["test"].indices)
    description = f"embedded CIFAR-10 sample ({n_train} train / {n_test} test)"
    return RawData(parts["train"], parts["test"], classes, description)
