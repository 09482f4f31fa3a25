"""Checkpoints and weight files that load without executing code.

A checkpoint is a plain dict of tensors and primitives written atomically with `torch.save` and read
with `torch.load(weights_only=True)`; final weights are also written as safetensors beside `arch.json`.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from proxyless.arch import Arch
from proxyless.atomic import atomic_torch_save, atomic_write
from proxyless.errors import UserError

CHECKPOINT_FORMAT = "proxyless-checkpoint/1"


class CheckpointError(UserError):
    """A checkpoint or weight file is missing, corrupt, unsafe or for another architecture."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    return atomic_torch_save({"format": CHECKPOINT_FORMAT, **state}, path)


def load_checkpoint(path: str | Path, arch: Arch | None = None) -> dict[str, Any]:
    """Read a checkpoint safely; if `arch` is given, refuse one saved for another architecture."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: refused to load (not a plain-data checkpoint: {first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first}); use an earlier one or start over") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a proxyless checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    if arch is not None and state.get("arch") != arch.to_dict():
        raise CheckpointError(f"{path}: checkpoint was saved for a different architecture; pass the matching --arch")
    return state


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Weights (and BN buffers) as safetensors."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def load_weights(model: nn.Module, path: str | Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    load_state(model, tensors, str(path))


def load_state(model: nn.Module, state_dict: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict with a one-line error when the shapes or names do not fit the model."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        detail = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise CheckpointError(f"{where}: weights do not fit this architecture ({detail}); pass the matching --arch") from None
