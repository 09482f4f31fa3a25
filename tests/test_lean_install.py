"""The core install: search and training run without the extras; a command that needs one says in one
line which `pip install` brings it.

Every command here runs as a real `python -m proxyless` process in which onnx, onnxscript, onnxruntime,
matplotlib and tensorboard cannot be imported (`sitecustomize` marks them missing in sys.modules), as in a
virtual environment set up with `pip install -c constraints.txt -e .` alone.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from proxyless.ops import parse_op
from proxyless.space import SearchSpace, Stage, dump_space

EXTRAS = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "plot": ("matplotlib",), "tensorboard": ("tensorboard",)}
BLOCKED = sorted(name for names in EXTRAS.values() for name in names)

BLOCKER = f"""\
# Optional packages behave as if not installed: `import onnx` raises ModuleNotFoundError (name "onnx")
# and importlib.util.find_spec("onnx") is None, which is what torch probes them with.
import sys

for name in {BLOCKED!r}:
    sys.modules[name] = None
"""

SPACE = SearchSpace(  # 32 px, two classes: seconds to search and train on a dozen images
    name="lean", input_size=32, stem_channels=8, stem_stride=2, first_block_channels=8,
    stages=(Stage(8, 1, 2), Stage(16, 1, 2)), candidates=(parse_op("mb_k3_e3"), parse_op("mb_k5_e6")),
    feature_mix_channels=32, num_classes=2,
)


@pytest.fixture(scope="module")
def lean(tmp_path_factory):
    """run(*argv) -> CompletedProcess of `python -m proxyless ARGV` without the extras, in a work dir
    holding space.json and imgs/ (two classes of six random 32 px JPEGs)."""
    work = tmp_path_factory.mktemp("lean")
    (work / "site").mkdir()
    (work / "site" / "sitecustomize.py").write_text(BLOCKER)
    dump_space(SPACE, work / "space.json")
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (work / "imgs" / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(work / "imgs" / name / f"{i}.jpg")
    path = os.pathsep.join(filter(None, [str(work / "site"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "PROXYLESS_CACHE": str(work / "cache")}

    def run(*argv: str, module: str = "proxyless") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *argv], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300, check=False)

    run.work = work
    return run


def test_the_optional_packages_really_cannot_be_imported(lean):
    probe = "; ".join(f"exec('try:\\n import {name}\\n print(\"imported {name}\")\\nexcept ModuleNotFoundError: pass')"
                      for name in BLOCKED)
    done = subprocess.run([sys.executable, "-c", probe], cwd=lean.work, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(lean.work / "site")})
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    unblocked = subprocess.run([sys.executable, "-c", f"import {', '.join(BLOCKED)}"], capture_output=True, text=True,
                               check=False)
    assert unblocked.returncode == 0, unblocked.stderr  # they are installed here: the check is not vacuous


@pytest.fixture(scope="module")
def searched(lean) -> Path:
    done = lean("search", "--space", "space.json", "--data", "imgs", "--batch-size", "2", "--epochs", "2",
                "--warmup-epochs", "1", "--no-progress", "--out", "search")
    assert done.returncode == 0, done.stderr[-3000:]
    return lean.work / "search"


@pytest.fixture(scope="module")
def trained(lean, searched) -> Path:
    done = lean("train", "--arch", str(searched / "arch.json"), "--data", "imgs", "--batch-size", "4", "--epochs", "1",
                "--no-progress", "--out", "train")
    assert done.returncode == 0, done.stderr[-3000:]
    return lean.work / "train"


def test_search_and_train_run_without_the_extras(searched, trained):
    assert (searched / "arch.json").is_file() and (searched / "metrics.csv").is_file()
    assert (trained / "weights.safetensors").is_file() and (trained / "metrics.csv").is_file()


@pytest.mark.parametrize("extra, argv", [
    ("onnx", ["export", "--arch", "train/arch.json", "--weights", "train/weights.safetensors", "--format", "onnx"]),
    ("onnx", ["latency", "measure", "--arch", "train/arch.json", "--backend", "onnxruntime", "--rounds", "1"]),
    ("plot", ["plot", "search"]),
    ("tensorboard", ["train", "--arch", "train/arch.json", "--data", "imgs", "--batch-size", "4", "--epochs", "1",
                     "--tensorboard", "--no-progress", "--out", "board"]),
], ids=["export-onnx", "latency-onnxruntime", "plot", "train-tensorboard"])
def test_a_command_needing_an_extra_names_its_install_in_one_line(lean, trained, extra, argv):
    done = lean(*argv)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f'pip install "proxyless[{extra}]"' in lines[0], done.stderr
    assert "which is not installed" in lines[0] and "Traceback" not in done.stderr
