"""Optional installs: a package only some commands need, imported when they need it.

    ort = require("onnxruntime", "onnx", "ONNX Runtime timing")   # the module, or MissingExtra

The core install (`pip install proxyless`) holds what search and training use. ONNX export and the
onnxruntime backend (`proxyless[onnx]`), figures (`proxyless[plot]`) and TensorBoard logging
(`proxyless[tensorboard]`) are extras; `proxyless[all]` brings all three. A command that needs a
missing one stops with one line naming the `pip install` that brings it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from proxyless.errors import UserError

EXTRAS = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "plot": ("matplotlib",), "tensorboard": ("tensorboard",)}


class MissingExtra(UserError):
    """An optional package that a command needs is not installed; the message names the extra."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import and return `module`, or raise MissingExtra saying that `purpose` needs it and that
    `pip install "proxyless[extra]"` brings it."""
    assert extra in EXTRAS, f"unknown extra {extra!r}"
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = (err.name or "").split(".")[0]
        if missing not in (module.split(".")[0], *EXTRAS[extra]):
            raise  # installed but broken (err.name is None), or a core package missing: keep the real error
        install = f'pip install "proxyless[{extra}]"'
        raise MissingExtra(f"{purpose} needs {missing}, which is not installed: {install}") from None
