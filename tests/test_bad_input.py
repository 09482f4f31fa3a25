"""Bad input to the command line, one row per case.

Every error row asserts: exit code 2; exactly one non-empty line on stderr, with `error:` and the text
that names the problem (and the fix); no traceback; and no file touched: every file and directory
under the shared fixtures (a finished train run, a finished search run, data, arch and table files)
and the test's own directory is byte-identical afterwards and nothing new appears (the data loader's
decode cache, `$PROXYLESS_CACHE`, excepted). A run that could not start leaves no run directory.

Argument templates are split on spaces after `{w}` (the shared fixtures) and `{t}` (the test's own
directory, also the working directory) are filled in.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import synthetic_table, tiny32_space
from proxyless.arch import save_arch
from proxyless.cli import main
from proxyless.data import load_splits
from proxyless.data.cache import CACHE_ENV
from proxyless.latency.lut import LatencyTable, save_lut
from proxyless.latency.predict import LatencyModel
from proxyless.search.hardware import reachable
from proxyless.zoo import get_zoo_arch
from test_data import write_mixed_folder

ZOO = "mobilenetv2_0.35"
CACHE = "cache"  # under {w}: the decode cache the data loader fills, left out of the snapshots
SPACE2 = tiny32_space(num_classes=2)  # the classes of {w}/imgs: no "classifier set to the data's" line
FASTEST, SLOWEST = reachable(LatencyModel(SPACE2, synthetic_table(SPACE2)))
MID = f"{(FASTEST + SLOWEST) / 2:.4f}ms"  # a reachable target on the tables of SPACE2

TRAIN = f"train --zoo {ZOO} --data {{w}}/imgs --image-size 32 --batch-size 4 --epochs 1 --no-progress"
SEARCH = ("search --space {w}/space.json --data {w}/imgs --batch-size 2 --epochs 2 --warmup-epochs 1 "
          "--no-progress")
SEARCH_LUT = SEARCH + " --lut {w}/lut.json"
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


# ---------------------------------------------------------------- fixtures

def write_images(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 6, seed: int = 0) -> Path:
    """ROOT/<class>/NNN.jpg: small random 32×32 JPEGs."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / name / f"{i:03d}.jpg")
    return root


def write_arch_variants(w: Path) -> None:
    """arch.json files: good for {w}/imgs, and broken in each way the rows need."""
    arch = get_zoo_arch(ZOO).with_task(32, 2)
    save_arch(arch, w / "arch.json")
    save_arch(get_zoo_arch("mobilenetv2_0.5").with_task(32, 2), w / "other_arch.json")
    save_arch(get_zoo_arch(ZOO), w / "arch224.json")  # 224 px, 1000 classes
    save_arch(get_zoo_arch(ZOO).with_task(32, 10), w / "arch10.json")
    data = arch.to_dict()
    variants = {
        "short": {**data, "ops": data["ops"][:-1]},
        "unknown_op": {**data, "ops": [*data["ops"][:3], "mb_k9_e6", *data["ops"][4:]]},
        "zero_stride": {**data, "ops": ["zero" if not slot.keeps_shape else op
                                        for slot, op in zip(arch.space.layers(), data["ops"])]},
    }
    for name, variant in variants.items():
        (w / f"{name}.json").write_text(json.dumps(variant))
    (w / "bad.json").write_text("{oops")


def write_tables(w: Path) -> None:
    """Latency tables: one for SPACE2, one for another space, one from another backend, one not JSON."""
    (w / "space.json").write_text(json.dumps(SPACE2.to_dict()))
    save_lut(synthetic_table(SPACE2), w / "lut.json")
    save_lut(synthetic_table(replace(SPACE2, feature_mix_channels=64)), w / "other_space_lut.json")
    table = synthetic_table(SPACE2)
    phone = LatencyTable({**table.header, "backend": "pixel1", "device": "Pixel 1"},
                         {replace(key, backend="pixel1"): stat for key, stat in table.entries.items()})
    save_lut(phone, w / "phone_lut.json")
    (w / "bad_lut.json").write_text('{"format": "proxyless-lut/1", "entries": [')


def write_bad_data(w: Path) -> None:
    (w / "empty").mkdir()
    (w / "texts" / "cat").mkdir(parents=True)
    (w / "texts" / "cat" / "a.txt").write_text("not an image")
    shutil.copytree(w / "imgs", w / "hollow_class")
    (w / "hollow_class" / "zebra").mkdir()
    (w / "broken" / "cat").mkdir(parents=True)
    for i in range(3):
        (w / "broken" / "cat" / f"{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (w / "existing").mkdir()
    (w / "existing" / "keep.txt").write_text("precious")
    (w / "bad_space.yaml").write_text("name: [unclosed\n")


def truncated_copy(run: Path, copy: Path) -> None:
    """A copy of a run directory whose checkpoint.pt is cut in half."""
    shutil.copytree(run, copy)
    checkpoint = copy / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every input the rows read, built once: data, arch and table files, a finished train run and a
    finished search run, and copies of both with a truncated checkpoint."""
    w = tmp_path_factory.mktemp("world")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(w / CACHE))
        write_images(w / "imgs")
        write_arch_variants(w)
        write_tables(w)
        write_bad_data(w)
        assert main([*TRAIN.format(w=w).split(), "--out", str(w / "train_run")]) == 0
        assert main([*SEARCH.format(w=w).split(), "--out", str(w / "search_run")]) == 0
    truncated_copy(w / "train_run", w / "train_truncated")
    truncated_copy(w / "search_run", w / "search_truncated")
    shutil.copytree(w / "search_run", w / "search_again")  # for the row that resumes it today
    return w


def snapshot(*roots: Path) -> dict[str, str | None]:
    """path -> sha256 of every file (None for a directory) under `roots`, the decode cache left out."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if CACHE in path.relative_to(root).parts[:1]:
                continue
            found[str(path)] = None if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run_cli(template: str, w: Path, t: Path) -> int:
    try:
        return main(template.format(w=w, t=t).split())
    except SystemExit as exit_info:  # argparse usage errors
        return exit_info.code


@pytest.fixture
def here(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own directory, as the working directory (a default `runs/` would land, and be seen, here)."""
    monkeypatch.setenv(CACHE_ENV, str(world / CACHE))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- the matrix

def row(case: str, template: str, *expected: str, marks=()):
    return pytest.param(template, expected, id=case, marks=marks)


ROWS = [
    # data
    row("missing data dir", TRAIN + " --data {w}/nowhere --out {t}/run", "nowhere", "is not a directory",
        "pass 'sample'"),
    row("missing data dir (search)", SEARCH + " --data {w}/nowhere --out {t}/run", "nowhere", "is not a directory"),
    row("empty data dir", TRAIN + " --data {w}/empty --out {t}/run", "no class folders with images",
        "expected ROOT/<class>/*.jpg"),
    row("non-image data dir", TRAIN + " --data {w}/texts --out {t}/run", "no class folders with images"),
    row("class folder without images", TRAIN + " --data {w}/hollow_class --out {t}/run",
        "class folder", "zebra' has no images", "add images to it or remove it"),
    row("every image corrupt", TRAIN + " --data {w}/broken --out {t}/run", "none of the 3 images",
        "could be decoded", "check that they are JPEG/PNG files"),
    row("batch larger than the data", TRAIN + " --batch-size 64 --out {t}/run", "--batch-size 64",
        "larger than the 11 training images", "lower it"),
    row("batch larger than the data (search)", SEARCH + " --batch-size 64 --out {t}/run", "--batch-size 64",
        "larger than the training (9) or valid (2) split", "lower --batch-size"),
    row("fixed 32 px data, 224 px arch", "train --arch {w}/arch224.json --data sample --out {t}/run",
        "fixed 32×32 images", "expects 224 px"),
    row("arch for other classes", "train --arch {w}/arch10.json --data {w}/imgs --out {t}/run",
        "expects 32 px images and 10 classes", "the data has 32 px and 2 classes",
        "proxyless zoo build NAME --image-size 32 --num-classes 2"),
    row("eval: arch for other classes", "eval --arch {w}/arch10.json --weights {w}/train_run/weights.safetensors "
        "--data {w}/imgs", "weights of another architecture",
        "first classifier.bias: 2 in the file, 10 in the network"),
    # arch.json
    row("missing arch file", "train --arch {w}/nope.json --out {t}/run", "nope.json", "does not exist"),
    row("arch: bad JSON", "train --arch {w}/bad.json --out {t}/run", "bad.json", "not valid JSON"),
    row("arch: wrong layer count", "train --arch {w}/short.json --data {w}/imgs --out {t}/run",
        "architecture has 15 ops but space 'mobilenetv2_0.35' has 16 searchable layers"),
    row("arch: unknown op", "train --arch {w}/unknown_op.json --out {t}/run", "layer 3: unknown op 'mb_k9_e6'"),
    row("arch: zero where the shape changes", "train --arch {w}/zero_stride.json --data {w}/imgs --out {t}/run",
        "op 'zero' is not allowed here", "needs a block that keeps its shape", "choose one of"),
    row("malformed space yaml", "space show {w}/bad_space.yaml", "bad_space.yaml", "not valid YAML"),
    row("unknown space preset", "space show proxyless-mars", "unknown search space 'proxyless-mars'"),
    row("unknown zoo model", "train --zoo resnet50 --out {t}/run", "unknown zoo model 'resnet50'"),
    row("bad flag value", "train --epochs many", "invalid int value: 'many'", "--help"),
    # latency tables
    row("table of another space", SEARCH_LUT.replace("lut.json", "other_space_lut.json")
        + f" --target-latency {MID} --out {{t}}/run", "does not cover space 'tiny32'", "proxyless lut build"),
    row("table of another backend, timed here", SEARCH_LUT.replace("lut.json", "phone_lut.json")
        + f" --target-latency {MID} --measured-derive --out {{t}}/run", "the table was measured on Pixel 1",
        "derive from the table alone"),
    row("table not JSON (search)", SEARCH_LUT.replace("lut.json", "bad_lut.json")
        + " --target-latency 1ms --out {t}/run", "bad_lut.json", "not valid JSON"),
    row("table not JSON (predict)", "latency predict --arch {w}/arch.json --lut {w}/bad_lut.json",
        "bad_lut.json", "not valid JSON"),
    row("table of another space (predict)", "latency predict --arch {w}/arch.json --lut {w}/lut.json",
        "the table (torch-cpu) lacks", "of the ops of mobilenetv2_0.35",
        "use a table built for its space (mobilenetv2_0.35, 32 px) with `proxyless lut build`"),
    row("missing table", "lut show --lut {w}/nope_lut.json", "nope_lut.json", "does not exist"),
    row("resume a table of another batch", "lut build --space {w}/space.json --batch-size 8 --out {w}/lut.json",
        "lut.json holds a table for", "batch=1", "cannot be resumed as", "batch=8", "choose another --out"),
    row("resume a table that is not JSON", "lut build --space {w}/space.json --out {w}/bad_lut.json",
        "bad_lut.json", "not valid JSON"),
    row("validate a table of another space", "lut validate --lut {w}/lut.json --space proxyless-cifar --samples 3 "
        "--calibrate 3 --no-progress --out {t}/val", "does not cover space 'proxyless-cifar'"),
    # checkpoints
    row("resume a run with another arch", "train --resume {w}/train_run --zoo mobilenetv2_0.5", "--resume",
        "the saved settings win", "--zoo 'mobilenetv2_0.5' (saved: 'mobilenetv2_0.35')", "start a new one with --out"),
    row("resume a training with another batch size", "train --resume {w}/train_run --batch-size 3 --lr 0.5",
        "the saved settings win, but these differ: --batch-size 3 (saved: 4), --lr 0.5 (saved: 0.05)"),
    row("resume a training with fewer epochs", "train --resume {w}/train_run --epochs 0",
        "--epochs 0 is fewer than the run's 1", "a resume may only add epochs"),
    row("resume a search with another batch size", "search --resume {w}/search_again --batch-size 3 --no-progress",
        "the saved settings win, but these differ: --batch-size 3 (saved: 2)", "drop them to continue the run"),
    row("eval weights of another arch", "eval --arch {w}/other_arch.json --weights "
        "{w}/train_run/weights.safetensors --data {w}/imgs", "weights.safetensors",
        "weights of another architecture (218 tensors missing, extra or of another shape, first "
        "blocks.0.body.depthwise.0.weight: 48×1×3×3 in the file, none in the network); pass the matching --arch"),
    row("export a checkpoint of another arch", "export --arch {w}/other_arch.json --weights "
        "{w}/train_run/checkpoint.pt --format torchscript", "saved for a different architecture"),
    row("export weights of another arch", "export --arch {w}/other_arch.json --weights "
        "{w}/train_run/weights.safetensors --format onnx", "weights of another architecture",
        "pass the matching --arch"),
    row("eval a truncated checkpoint", "eval {w}/train_truncated --data {w}/imgs",
        "truncated or corrupt checkpoint", "use an earlier one or start over"),
    row("resume a truncated checkpoint", "train --resume {w}/train_truncated --epochs 2",
        "truncated or corrupt checkpoint (PytorchStreamReader failed reading zip archive: failed finding central "
        "directory); use an earlier one or start over"),
    row("export a truncated checkpoint", "export --arch {w}/arch.json --weights {w}/train_truncated/checkpoint.pt "
        "--format torchscript", "truncated or corrupt checkpoint"),
    row("resume a truncated search", "search --resume {w}/search_truncated --no-progress",
        "truncated or corrupt checkpoint"),
    row("derive a truncated search", "derive {w}/search_truncated", "truncated or corrupt checkpoint"),
    row("derive a train run", "derive {w}/train_run", "not a search checkpoint", "proxyless search"),
    row("derive a missing run", "derive {w}/nowhere", "does not exist"),
    row("resume a missing search", "search --resume {w}/nowhere", "no config.json there",
        "`proxyless search` run directory"),
    # output directory
    row("existing output dir", TRAIN + " --out {w}/train_run", "already exists", "pass --resume", "--overwrite"),
    row("existing output dir (search)", SEARCH + " --out {w}/search_run", "already exists", "--overwrite"),
    row("overwrite a directory that is no run", TRAIN + " --out {w}/existing --overwrite",
        "refusing to --overwrite", "does not look like a proxyless run directory"),
    row("--resume with --overwrite", "train --resume {w}/train_run --overwrite",
        "--resume and --overwrite contradict each other"),
    row("--resume with --overwrite (search)", "search --resume {w}/search_again --overwrite --no-progress",
        "--resume and --overwrite contradict each other"),
    # search settings
    row("negative target latency", SEARCH_LUT + " --target-latency=-3ms --out {t}/run",
        "--target-latency must be a positive number of milliseconds", "'-3ms'"),
    row("negative target latency, no =", SEARCH_LUT + " --target-latency -3ms --out {t}/run",
        "argument --target-latency: expected at least one argument",
        "written --target-latency=VALUE when it starts with '-'"),
    row("zero target latency", SEARCH_LUT + " --target-latency 0 --out {t}/run",
        "--target-latency must be a positive number of milliseconds"),
    row("target latency out of reach", SEARCH_LUT + " --target-latency 0.000001ms --out {t}/run", "out of reach",
        "choose a target in that range"),
    row("unknown space (search)", "search --space nope --out {t}/run", "unknown search space 'nope'"),
    row("warmup not below epochs", SEARCH + " --epochs 2 --warmup-epochs 2 --out {t}/run",
        "--warmup-epochs must be in [0, --epochs)"),
    row("valid size not a fraction", SEARCH + " --valid-size 1.5 --out {t}/run", "--valid-size must be a fraction"),
    row("residual init not a scale", SEARCH + " --residual-init half --out {t}/run",
        "--residual-init: must be zero, unit or a scale in [0, 1], got 'half'"),
    row("residual init above unit", SEARCH + " --residual-init 1.5 --data {w}/nowhere --out {t}/run",
        "--residual-init must be zero, unit or a scale in [0, 1], got 1.5"),
    row("more images than the data has", TRAIN + " --limit-images 13 --out {t}/run",
        "--limit-images must be in 1..11 (the data's training images), got 13"),
    # refused before the data is read: the folder given last does not exist, and is not what is reported
    row("no images (search)", SEARCH + " --limit-images 0 --data {w}/nowhere --out {t}/run",
        "--limit-images must be a number of training images, 1 or more; got 0"),
    row("no images", TRAIN + " --limit-images -5 --data {w}/nowhere --out {t}/run",
        "--limit-images must be a number of training images, 1 or more; got -5"),
    row("negative threads", TRAIN + " --threads -1 --out {t}/run", "--threads must be 0 (torch's default) or more"),
    # device
    row("no GPU", TRAIN + " --device cuda --out {t}/run", "--device cuda", "no CUDA GPU", "use --device cpu",
        marks=NO_GPU),
    row("no GPU (search)", SEARCH + " --device cuda --out {t}/run", "no CUDA GPU", "use --device cpu", marks=NO_GPU),
]


@pytest.mark.parametrize("template, expected", ROWS)
def test_bad_input_gives_one_line_exit_2_and_touches_nothing(template, expected, world, here, capsys):
    before = snapshot(world, here)
    code = run_cli(template, world, here)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1 and "error:" in lines[0], err
    for text in expected:
        assert text.format(w=world, t=here) in lines[-1], lines[-1]
    assert snapshot(world, here) == before  # nothing modified, removed or added
    assert not (here / "run").exists() and not (here / "runs").exists()  # the run that could not start


# ---------------------------------------------------------------- damaged images that are skipped

@pytest.mark.parametrize("command", [TRAIN, SEARCH])
def test_a_corrupt_image_is_skipped_with_one_warning(command, world, here, capsys):
    data = shutil.copytree(world / "imgs", here / "data")
    good = (data / "dog" / "000.jpg").read_bytes()
    (data / "dog" / "zz_cut.jpg").write_bytes(good[: len(good) // 2])
    code = run_cli(command + " --data {t}/data --out {t}/run", world, here)
    err = capsys.readouterr().err
    assert code == 0, err
    skipped = [line for line in err.splitlines() if "skipped" in line]  # one line, not Python's two
    assert len(skipped) == 1 and "warning: skipped 1 of 13 images" in skipped[0], err
    assert f"first: '{data / 'dog' / 'zz_cut.jpg'}'" in skipped[0]
    config = json.loads((here / "run" / "config.json").read_text())
    assert "(11 train / 1 test" in config["data"]  # the 12 good images
    assert (here / "run" / "metrics.jsonl").read_text().count("\n") >= 1


# ---------------------------------------------------------------- images of any mode and size

def test_images_of_any_mode_and_size_train(world, here, capsys):
    rng = np.random.default_rng(0)
    root = write_mixed_folder(here / "mixed", rng.integers(0, 256, (18, 32, 32, 3), dtype=np.uint8),
                              np.repeat(np.arange(3), 6))
    sixteen = np.full((24, 40), 40000, dtype=np.uint16)  # 16-bit grey: 40000 >> 8 = 156
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        Image.fromarray(sixteen).save(folder / "z_16bit.png")
    with Image.open(folder / "z_16bit.png") as saved:
        assert saved.mode == "I;16"
    splits = load_splits(str(root), 32, augment=False, progress=False)
    assert splits.train.images.shape == (21, 32, 32, 3) and splits.train.images.dtype == np.uint8
    grey16 = np.asarray(splits.train.images[6])  # airplane/z_16bit.png, after the 6 others of its class
    assert np.abs(grey16.astype(int) - 156).max() <= 1
    assert run_cli(TRAIN + " --data {t}/mixed --out {t}/run", world, here) == 0, capsys.readouterr().err
    assert json.loads((here / "run" / "result.json").read_text())["macs"] > 0
