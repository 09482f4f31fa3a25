"""Checkpoints and weight files that load without executing code.

A checkpoint is a plain dict of tensors and primitives written atomically with `torch.save` and read
with `torch.load(weights_only=True)`; final weights are also written as safetensors beside `arch.json`.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from proxyless.errors import UserError
from proxyless.infra.atomic import atomic_torch_save, atomic_write

if TYPE_CHECKING:  # infra depends on no domain module at import time
    from proxyless.arch import Arch

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
        first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first}); "
                              "use an earlier one or start over") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a proxyless checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    if arch is not None:
        check_arch(state, arch, path)
    return state


def check_arch(state: dict[str, Any], arch: Arch, path: Path) -> None:
    """Refuse a checkpoint saved for another architecture than `arch`."""
    if state.get("arch") != arch.to_dict():
        raise CheckpointError(f"{path}: checkpoint was saved for a different architecture than {_arch_name(arch)}; "
                              f"pass the matching --arch{_beside(path)}")


def _arch_name(arch: Arch) -> str:
    return repr(arch.name) if arch.name else "the given one"


def _beside(path: Path) -> str:
    """', e.g. --arch RUN/arch.json' when the checkpoint's run directory holds its arch.json."""
    return f", e.g. --arch {path.parent / 'arch.json'}" if (path.parent / "arch.json").is_file() else ""


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
    """load_state_dict, refusing in one short line tensors whose names or shapes do not fit the model."""
    shapes = {name: tuple(t.shape) if isinstance(t, torch.Tensor) else None for name, t in state_dict.items()}
    problem = misfit(model, shapes)
    if problem:
        raise CheckpointError(f"{where}: weights of another architecture ({problem}); pass the matching --arch")
    model.load_state_dict(state_dict)


def misfit(model: nn.Module, shapes: dict[str, tuple[int, ...] | None]) -> str | None:
    """None when tensors of these names and shapes fit `model`; else how many do not, and the first of them
    (load_state_dict would list every one)."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    differ = sorted(name for name in expected.keys() | shapes.keys() if expected.get(name) != shapes.get(name))
    if not differ:
        return None
    first = differ[0]
    return (f"{len(differ)} tensors missing, extra or of another shape, first {first}: "
            f"{_shape(shapes.get(first))} in the file, {_shape(expected.get(first))} in the network")


def _shape(shape: tuple[int, ...] | None) -> str:
    return "none" if shape is None else "×".join(map(str, shape)) or "scalar"
