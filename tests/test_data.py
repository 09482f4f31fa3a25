"""Tests for proxyless.data; every fixture is built from the embedded sample (real CIFAR-10)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import proxyless.data.imagefolder as imagefolder
from proxyless.data import DataError, Splits, download_cifar10, load_splits, make_loader, native_image_size
from proxyless.data.transforms import CIFAR10_MEAN, CIFAR10_STD

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


# ---------------------------------------------------------------- fixtures and builders

@pytest.fixture(scope="module")
def sample() -> Splits:
    return load_splits("sample", 32, progress=False)


@pytest.fixture(scope="module")
def pixels(sample: Splits) -> tuple[np.ndarray, np.ndarray]:
    """Raw sample test images (1000, 32, 32, 3) uint8 and their labels."""
    return np.asarray(sample.test.images), np.asarray(sample.test.labels)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the default cache out of the user's home directory."""
    cache = tmp_path / "default-cache"
    monkeypatch.setenv("PROXYLESS_CACHE", str(cache))
    return cache


def unnormalize(x: torch.Tensor) -> np.ndarray:
    """float (3, H, W) -> uint8 (H, W, 3)."""
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    return (x * std + mean).mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def dump(obj: object, path: Path) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f)


def write_cifar(root: Path, images: np.ndarray, labels: np.ndarray, n_test: int = 10) -> Path:
    """A real-format `cifar-10-batches-py`: 5 train batches + test_batch from `images`."""
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # (N, 3072) CHW row-major
    train_rows, test_rows = rows[:-n_test], rows[-n_test:]
    for i, chunk in enumerate(np.array_split(np.arange(len(train_rows)), 5), 1):
        dump({b"data": train_rows[chunk], b"labels": labels[chunk].tolist()},
             directory / f"data_batch_{i}")
    dump({b"data": test_rows, b"labels": labels[-n_test:].tolist()}, directory / "test_batch")
    dump({b"label_names": [c.encode() for c in CLASSES]}, directory / "batches.meta")
    return directory


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, per_class: int = 4,
                 skip: int = 0) -> Path:
    """ROOT/<class>/*.jpg from `per_class` images (after the first `skip`) of classes 0-2."""
    for c in range(3):
        (root / CLASSES[c]).mkdir(parents=True)
        for j, i in enumerate(np.flatnonzero(labels == c)[skip:skip + per_class]):
            Image.fromarray(images[i]).save(root / CLASSES[c] / f"{j:03d}.jpg", quality=95)
    return root


class Evil:
    """Unpickling this runs `touch marker`: what a tampered batch file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def http_dir(tmp_path: Path):
    """Serve a directory on 127.0.0.1 from a thread; yields (directory, base URL)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------- embedded sample

def test_sample_sizes_and_items(sample: Splits) -> None:
    assert (len(sample.train), len(sample.test)) == (5000, 1000)
    assert sample.valid is None
    assert sample.classes == CLASSES and sample.image_size == 32
    assert "5000 train / 1000 test" in sample.source
    x, y = sample.test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert set(np.asarray(sample.train.labels).tolist()) == set(range(10))


def test_sample_normalization(sample: Splits) -> None:
    batch = torch.stack([sample.test[i][0] for i in range(0, 1000, 2)])  # (500, 3, 32, 32)
    assert batch.mean().abs() < 0.15
    assert 0.8 < batch.std() < 1.2


def test_augmentation_changes_images_and_is_seeded(sample: Splits) -> None:
    plain = load_splits("sample", 32, augment=False, progress=False)
    torch.manual_seed(0)
    first = [sample.train[i][0] for i in range(8)]
    torch.manual_seed(0)
    again = [sample.train[i][0] for i in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(a.shape == (3, 32, 32) for a in first)
    assert any(not torch.equal(a, plain.train[i][0]) for i, a in enumerate(first))
    torch.manual_seed(1)
    assert torch.equal(plain.train[3][0], plain.train[3][0])  # no augmentation: fixed


def test_sample_rejects_other_sizes() -> None:
    with pytest.raises(DataError, match="fixed 32×32 images .* expects 224 px"):
        load_splits("sample", 224, progress=False)


# ---------------------------------------------------------------- CIFAR pickles

def test_cifar_batches_round_trip(tmp_path: Path, pixels) -> None:
    images, labels = pixels[0][:60], pixels[1][:60]
    directory = write_cifar(tmp_path, images, labels)
    for source in (directory, tmp_path):  # the batches dir itself or its parent
        splits = load_splits(str(source), 32, augment=False, progress=False)
        assert (len(splits.train), len(splits.test), splits.classes) == (50, 10, CLASSES)
        np.testing.assert_array_equal(splits.train.images, images[:50])
        np.testing.assert_array_equal(splits.test.images, images[50:])
        x, y = splits.test[4]
        np.testing.assert_array_equal(unnormalize(x), images[54])
        assert y == labels[54]
    assert native_image_size(str(directory)) == 32
    with pytest.raises(DataError, match="fixed 32×32"):
        load_splits(str(tmp_path), 64, progress=False)


def test_malicious_pickle_is_refused(tmp_path: Path, pixels) -> None:
    directory = write_cifar(tmp_path, pixels[0][:20], pixels[1][:20])
    marker = tmp_path / "pwned"
    dump({b"data": Evil(marker), b"labels": []}, directory / "data_batch_1")
    with pytest.raises(DataError, match="refusing to unpickle posix.system"):
        load_splits(str(directory), 32, progress=False)
    assert not marker.exists()


def test_damaged_cifar_batch(tmp_path: Path, pixels) -> None:
    directory = write_cifar(tmp_path, pixels[0][:20], pixels[1][:20])
    (directory / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="data_batch_3.*re-download"):
        load_splits(str(directory), 32, progress=False)
    (directory / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3' is missing"):
        load_splits(str(directory), 32, progress=False)


# ---------------------------------------------------------------- download

def test_download_extracts_and_verifies(tmp_path: Path, pixels, http_dir) -> None:
    served, base = http_dir
    write_cifar(tmp_path / "src", pixels[0][:30], pixels[1][:30])
    archive = served / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()

    bad_root = tmp_path / "bad"
    with pytest.raises(DataError, match="md5"):
        download_cifar10(bad_root, url=f"{base}/cifar.tar.gz", md5="0" * 32, progress=False)
    assert list(bad_root.iterdir()) == []

    root = tmp_path / "dl"
    got = download_cifar10(root, url=f"{base}/cifar.tar.gz", md5=md5, progress=False)
    assert got == root / "cifar-10-batches-py" and got.is_dir()
    assert native_image_size(f"cifar10:{root}") == 32
    splits = load_splits(f"cifar10:{root}", 32, progress=False)  # found: no second download
    assert (len(splits.train), len(splits.test)) == (20, 10)
    archive.unlink()  # already extracted: must not touch the network again
    assert download_cifar10(root, url=f"{base}/cifar.tar.gz", md5=md5, progress=False) == got


def test_download_network_error(tmp_path: Path, http_dir) -> None:
    _, base = http_dir
    with pytest.raises(DataError, match="could not download"):
        download_cifar10(tmp_path / "x", url=f"{base}/missing.tar.gz", progress=False)
    assert list((tmp_path / "x").iterdir()) == []


# ---------------------------------------------------------------- ImageFolder

MODES = (("L", "jpg"), ("RGBA", "png"), ("CMYK", "jpg"), ("P", "png"), ("RGB", "jpeg"),
         ("L", "PNG"))
SIZES = ((48, 40), (32, 32), (100, 70), (21, 37), (64, 64), (90, 120))


def write_mixed_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """3 classes x 6 images in every mode/size/extension combination above."""
    for c in range(3):
        (root / CLASSES[c]).mkdir(parents=True)
        picks = np.flatnonzero(labels == c)[:len(MODES)]
        for j, (i, (mode, ext), size) in enumerate(zip(picks, MODES, SIZES)):
            img = Image.fromarray(images[i]).resize(size)
            img = img.quantize(64) if mode == "P" else img.convert(mode)
            img.save(root / CLASSES[c] / f"{j}_{mode}.{ext}")
    (root / CLASSES[0] / "notes.txt").write_text("not an image")
    return root


@pytest.mark.parametrize("image_size, stored", [(32, 32), (80, 91)])
def test_image_folder_modes_and_sizes(tmp_path: Path, pixels, image_size: int,
                                      stored: int) -> None:
    root = write_mixed_folder(tmp_path / "data", *pixels)
    assert native_image_size(str(root)) is None
    splits = load_splits(str(root), image_size, cache_dir=tmp_path / "cache", progress=False)
    assert splits.classes == CLASSES[:3]
    assert (len(splits.train), len(splits.test)) == (16, 2)  # 10% held out of 18
    assert "held out" in splits.source
    assert splits.train.images.shape == (18, stored, stored, 3)
    gray = splits.train.images[0]  # airplane/0_L.jpg
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
    torch.manual_seed(0)
    for ds in (splits.train, splits.test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, image_size, image_size) and x.dtype == torch.float32
            assert 0 <= y < 3 and torch.isfinite(x).all()


def test_image_folder_train_test_layout(tmp_path: Path, pixels) -> None:
    images, labels = pixels
    write_folder(tmp_path / "d" / "train", images, labels, per_class=4)
    write_folder(tmp_path / "d" / "val", images, labels, per_class=2, skip=50)
    splits = load_splits(str(tmp_path / "d"), 32, valid_size=3, cache_dir=tmp_path / "c",
                         progress=False)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (9, 3, 6)
    assert "train/ and val/" in splits.source
    x, _ = splits.test[0]  # eval transform at 32 px is the stored (resized) image
    stored = np.asarray(Image.open(tmp_path / "d" / "val" / "airplane" / "000.jpg"))
    assert np.abs(unnormalize(x).astype(int) - stored).max() <= 1
    (tmp_path / "d" / "val" / "bird").rename(tmp_path / "d" / "val" / "birds")
    with pytest.raises(DataError, match="same class folders"):
        load_splits(str(tmp_path / "d"), 32, cache_dir=tmp_path / "c", progress=False)


def test_corrupt_image_is_skipped_with_one_warning(tmp_path: Path, pixels) -> None:
    root = write_folder(tmp_path / "data", *pixels)
    good = (root / "automobile" / "000.jpg").read_bytes()
    (root / "automobile" / "zz_truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "bird" / "zz_garbage.png").write_bytes(b"definitely not a png")
    expected = r"skipped 2 of 14 .*first: .*automobile/zz_truncated\.jpg"
    with pytest.warns(UserWarning, match=expected) as record:
        splits = load_splits(str(root), 32, cache_dir=tmp_path / "cache", progress=False)
    assert len([w for w in record if "skipped" in str(w.message)]) == 1
    assert len(splits.train) + len(splits.test) == 12


def test_all_images_corrupt(tmp_path: Path) -> None:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "data" / "cat" / f"{i}.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DataError, match="none of the 3 images .* could be decoded"):
        load_splits(str(tmp_path / "data"), 32, cache_dir=tmp_path / "cache", progress=False)


def test_image_folder_errors(tmp_path: Path, pixels) -> None:
    with pytest.raises(DataError, match="'.*missing' is not a directory"):
        load_splits(str(tmp_path / "missing"), 32, progress=False)
    with pytest.raises(DataError, match="not a directory"):
        native_image_size(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no class folders with images .*ROOT/<class>/\*\.jpg"):
        load_splits(str(tmp_path / "empty"), 32, progress=False)
    (tmp_path / "texts" / "a").mkdir(parents=True)
    (tmp_path / "texts" / "a" / "readme.txt").write_text("x")
    (tmp_path / "texts" / "b.csv").write_text("x")
    with pytest.raises(DataError, match="no class folders with images"):
        load_splits(str(tmp_path / "texts"), 32, progress=False)
    root = write_folder(tmp_path / "data", *pixels)
    (root / "zebra").mkdir()
    with pytest.raises(DataError, match="class folder '.*zebra' has no images"):
        load_splits(str(root), 32, progress=False)


def test_cache_is_reused(tmp_path: Path, pixels, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_folder(tmp_path / "data", *pixels)
    calls: list[Path] = []
    real = imagefolder.decode_image
    monkeypatch.setattr(imagefolder, "decode_image",
                        lambda path, spec: calls.append(path) or real(path, spec))
    first = load_splits(str(root), 32, progress=False)  # default cache: $PROXYLESS_CACHE
    cached = list((tmp_path / "default-cache" / "imagefolder").glob("*.npy"))
    assert len(calls) == 12 and len(cached) == 2  # images + labels
    assert not list((tmp_path / "default-cache").rglob("*.tmp-*"))
    mtimes = [p.stat().st_mtime_ns for p in cached]
    second = load_splits(str(root), 32, progress=False)
    assert len(calls) == 12 and [p.stat().st_mtime_ns for p in cached] == mtimes
    assert isinstance(second.train.images, np.memmap)
    np.testing.assert_array_equal(first.train.images, second.train.images)
    load_splits(str(root), 48, progress=False)  # another stored size: a new entry
    assert len(calls) == 24
    Image.fromarray(pixels[0][0]).save(root / "bird" / "new.jpg")  # listing changed: rebuilt
    load_splits(str(root), 32, progress=False)
    assert len(calls) == 37


def test_interrupted_decode_leaves_no_cache(tmp_path: Path, pixels,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_folder(tmp_path / "data", *pixels)

    def explode(path, spec):
        raise KeyboardInterrupt

    monkeypatch.setattr(imagefolder, "decode_image", explode)
    with pytest.raises(KeyboardInterrupt):
        load_splits(str(root), 32, cache_dir=tmp_path / "cache", progress=False)
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


# ---------------------------------------------------------------- splits and loaders

def test_valid_split_is_deterministic_and_disjoint() -> None:
    a = load_splits("sample", 32, valid_size=500, seed=1, progress=False)
    b = load_splits("sample", 32, valid_size=0.1, seed=1, progress=False)
    c = load_splits("sample", 32, valid_size=500, seed=2, progress=False)
    assert (len(a.train), len(a.valid), len(a.test)) == (4500, 500, 1000)
    np.testing.assert_array_equal(a.valid.indices, b.valid.indices)
    assert not np.array_equal(a.valid.indices, c.valid.indices)
    assert not set(a.train.indices) & set(a.valid.indices)
    assert set(a.train.indices) | set(a.valid.indices) == set(range(5000))
    torch.manual_seed(0)
    first = a.valid[7][0]
    torch.manual_seed(1)
    assert torch.equal(first, a.valid[7][0])  # eval transform: no augmentation
    assert "500 training images held out" in a.source


@pytest.mark.parametrize("valid_size", [5000, 6000, 1.0, -1, 1.5, True, "10"])
def test_bad_valid_size(valid_size) -> None:
    with pytest.raises(DataError, match="valid_size"):
        load_splits("sample", 32, valid_size=valid_size, progress=False)


def test_make_loader(sample: Splits) -> None:
    rows = range(0, 1000, 10)  # 10 of each class
    subset = torch.utils.data.Subset(sample.test, rows)
    with pytest.raises(DataError, match="batch size 256 is larger than the 100 training images; "
                                         "lower --batch-size"):
        make_loader(subset, 256, train=True)
    assert len(make_loader(subset, 256, train=False)) == 1
    train = make_loader(subset, 32, train=True, seed=3)
    assert len(train) == 3  # drop_last
    first = [y.tolist() for _, y in train]
    assert first == [y.tolist() for _, y in make_loader(subset, 32, train=True, seed=3)]
    assert first != [y.tolist() for _, y in make_loader(subset, 32, train=True, seed=4)]
    ordered = [y for _, y in make_loader(subset, 32, train=False)]
    assert [len(y) for y in ordered] == [32, 32, 32, 4]
    assert torch.cat(ordered).tolist() == [int(sample.test.labels[i]) for i in rows]


def test_native_image_size_and_bad_sources(tmp_path: Path) -> None:
    assert native_image_size("sample") == 32
    assert native_image_size(f"cifar10:{tmp_path / 'not-yet'}") == 32
    with pytest.raises(DataError, match="cifar10:DIR"):
        native_image_size("cifar10:")
    with pytest.raises(DataError, match="positive whole number"):
        load_splits("sample", 0, progress=False)
    with pytest.raises(DataError, match="fixed 32×32"):
        load_splits(f"cifar10:{tmp_path / 'not-yet'}", 224, progress=False)
    assert not (tmp_path / "not-yet").exists()  # size checked before any download


def test_sample_file_is_small_and_pickle_free() -> None:
    path = Path(imagefolder.__file__).with_name("cifar10_sample.npz")
    assert path.stat().st_size < 5 * 2**20
    with np.load(path, allow_pickle=False) as npz:
        assert npz["train_offsets"][-1] == len(npz["train_jpeg"])
        assert tuple(npz["classes"]) == CLASSES
