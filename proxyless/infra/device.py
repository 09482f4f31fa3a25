"""Choosing the compute device from a user flag."""

from __future__ import annotations

import torch

from proxyless.errors import UserError


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when present) -> torch.device, or a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name} was requested but no CUDA GPU is available; use --device cpu")
        return torch.device(name)
    raise UserError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
