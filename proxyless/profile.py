"""Parameter and MAC counts, using PyTorch's own `torch.utils.flop_counter`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Profile:
    params: int
    macs: int  # multiply-accumulates of conv and linear layers, batch 1

    def __str__(self) -> str:
        return f"params {self.params / 1e6:.2f}M  MACs {self.macs / 1e6:.1f}M"


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int) -> int:
    """Multiply-accumulates of one forward pass on a (1, 3, input_size, input_size) input.

    FlopCounterMode counts 2 FLOPs per multiply-accumulate for convolutions and matmuls.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def profile(model: nn.Module, input_size: int) -> Profile:
    return Profile(count_params(model), count_macs(model, input_size))
