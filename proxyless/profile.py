"""Parameter and MAC counts, using PyTorch's own `torch.utils.flop_counter`.

`space_profile` counts a whole space at once: a net's params and MACs are the fixed parts' plus
each layer's chosen candidate's (the shortcut adds neither), so one build per candidate prices
every architecture of the space (6,561 for NAS-Bench-Macro) by addition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    from proxyless.space import SearchSpace


@dataclass(frozen=True)
class Profile:
    params: int
    macs: int  # multiply-accumulates of conv and linear layers, batch 1

    def __str__(self) -> str:
        return f"params {self.params / 1e6:.2f}M  MACs {self.macs / 1e6:.1f}M"

    def __add__(self, other: Profile) -> Profile:
        return Profile(self.params + other.params, self.macs + other.macs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int, in_channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass on a (1, in_channels, input_size, input_size) input.

    FlopCounterMode counts 2 FLOPs per multiply-accumulate for convolutions and matmuls.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_channels, input_size, input_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def profile(model: nn.Module, input_size: int) -> Profile:
    return Profile(count_params(model), count_macs(model, input_size))


@dataclass(frozen=True)
class SpaceProfile:
    """The fixed parts' profile and, per searchable layer, each candidate's (in the layer's order)."""

    fixed: Profile
    layers: tuple[tuple[Profile, ...], ...]

    def of_indices(self, indices: Sequence[int]) -> Profile:
        """The profile of the architecture choosing candidate `indices[i]` at layer i."""
        return sum((layer[i] for layer, i in zip(self.layers, indices)), self.fixed)


def space_profile(space: SearchSpace) -> SpaceProfile:
    """Params and MACs of every part of `space`, each part built once at its input shape."""
    from proxyless.net import make_feature_mix, make_first_block, make_stem

    stem_size, final_size = space.stem_size, space.final_size
    classifier = Profile(space.feature_mix_out * space.num_classes + space.num_classes,
                         space.feature_mix_out * space.num_classes)  # the linear layer; pooling has no MACs
    fixed = (_part(make_stem(space), space.input_size, 3)
             + _part(make_first_block(space), stem_size, space.stem_out)
             + _part(make_feature_mix(space), final_size, space.last_channels) + classifier)
    layers = tuple(
        tuple(Profile(0, 0) if slot.is_identity(op) else _part(slot.build(op), slot.input_size, slot.in_channels)
              for op in slot.candidates)
        for slot in space.layers()
    )
    return SpaceProfile(fixed, layers)


def _part(module: nn.Module, input_size: int, in_channels: int) -> Profile:
    return Profile(count_params(module), count_macs(module, input_size, in_channels))
