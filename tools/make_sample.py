"""Build the embedded CIFAR-10 sample `proxyless/data/cifar10_sample.npz` from a JPEG tarball.

Usage (from the repository root):

    python tools/make_sample.py --tar ../shared/data/cifar10-jpg.tar.gz \
        --out proxyless/data/cifar10_sample.npz

The tarball holds an ImageFolder layout `train/<class>/NNNN.jpg` and `test/<class>/NNNN.jpg`.
Per class we keep the first `--train-per-class` / `--test-per-class` files in name order, a
deterministic choice (CIFAR-10's own order is already random with respect to content).

File format (read by `proxyless.data.sample`; `np.load(..., allow_pickle=False)` works):
    {split}_jpeg     uint8 (total_bytes,)   the ORIGINAL JPEG files, concatenated, not re-encoded
    {split}_offsets  int64 (N + 1,)         image i is {split}_jpeg[offsets[i]:offsets[i + 1]]
    {split}_labels   int64 (N,)             index into `classes`
    classes          <U (10,)               class names, sorted
for split in (train, test). The archive is zip-deflated: the JPEG payloads barely shrink, but every
file repeats the same ~620-byte header, which deflate removes (5.5 MB raw -> about 1.8 MB).
"""

from __future__ import annotations

import argparse
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np

SPLITS = ("train", "test")
MAX_BYTES = 5 * 1024 * 1024


def read_tar(tar_path: Path) -> dict[str, dict[str, dict[str, bytes]]]:
    """Read every `split/class/name.jpg` in one pass -> {split: {class: {name: jpeg bytes}}}."""
    files: dict[str, dict[str, dict[str, bytes]]] = {s: defaultdict(dict) for s in SPLITS}
    with tarfile.open(tar_path, "r:*") as tar:
        for member in tar:
            parts = member.name.removeprefix("./").split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] not in SPLITS:
                continue
            split, cls, name = parts
            if name.lower().endswith((".jpg", ".jpeg")):
                files[split][cls][name] = tar.extractfile(member).read()
    return files


def select(per_class: dict[str, dict[str, bytes]], count: int) -> tuple[list[bytes], list[int]]:
    """First `count` files of each class in name order -> (jpeg bytes list, labels)."""
    blobs: list[bytes] = []
    labels: list[int] = []
    for label, cls in enumerate(sorted(per_class)):
        names = sorted(per_class[cls])
        if len(names) < count:
            raise SystemExit(f"class '{cls}' has only {len(names)} images, need {count}; "
                             "lower the per-class count")
        blobs += [per_class[cls][n] for n in names[:count]]
        labels += [label] * count
    return blobs, labels


def pack(prefix: str, blobs: list[bytes], labels: list[int]) -> dict[str, np.ndarray]:
    """Concatenate JPEG files into one byte array with N + 1 offsets."""
    sizes = np.array([len(b) for b in blobs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # (N + 1,)
    return {
        f"{prefix}_jpeg": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        f"{prefix}_offsets": offsets,
        f"{prefix}_labels": np.array(labels, dtype=np.int64),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tar", type=Path, required=True, help="cifar10-jpg.tar.gz")
    parser.add_argument("--out", type=Path, required=True, help="output .npz")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    args = parser.parse_args(argv)

    # 1. read the tarball; 2. pick a fixed subset per class; 3. write and check the size
    files = read_tar(args.tar)
    classes = sorted(files["train"])
    if sorted(files["test"]) != classes:
        raise SystemExit(f"train classes {classes} differ from test classes "
                         f"{sorted(files['test'])}")
    arrays = {"classes": np.array(classes, dtype=np.str_)}
    for split, count in (("train", args.train_per_class), ("test", args.test_per_class)):
        arrays.update(pack(split, *select(files[split], count)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    size = args.out.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{args.out} is {size / 2**20:.1f} MiB, over the 5 MiB budget; "
                         "lower --train-per-class")
    counts = {s: len(arrays[f"{s}_labels"]) for s in SPLITS}
    print(f"wrote {args.out}: {len(classes)} classes, {counts}, {size / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
