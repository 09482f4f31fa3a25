"""The standalone network built from an `Arch` (and, through `build_net`, from a tree-cell `TreeArch`).

This module imports nothing from the search code: `arch.json` is the whole contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

import torch
from torch import nn

from proxyless.arch import Arch
from proxyless.layers import ConvBNAct, InvertedResidual, Residual
from proxyless.space import SearchSpace

if TYPE_CHECKING:
    from proxyless.tree.arch import TreeArch
    from proxyless.tree.net import TreeNet


class ProxylessNet(nn.Module):
    """stem -> first block -> searched blocks -> feature mix -> pool -> dropout -> classifier."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        space = arch.space
        self.arch = arch
        self.stem = make_stem(space)
        self.first_block = make_first_block(space)
        self.blocks = nn.Sequential(*(shortcut_block(slot.build(op)) for slot, op in zip(space.layers(), arch.ops)))
        self.feature_mix = make_feature_mix(space)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(space.dropout)
        self.classifier = nn.Linear(space.feature_mix_out, space.num_classes)
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, stem, H/s, W/s)
        x = self.first_block(x)
        x = self.blocks(x)  # (B, last, H/32, W/32) for the 224 px layout
        return self.feature_mix(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)  # (B, feature_mix)
        return self.classifier(self.dropout(x))


def make_stem(space: SearchSpace) -> nn.Module:
    return ConvBNAct(3, space.stem_out, 3, space.stem_stride, act=space.activation)


def make_first_block(space: SearchSpace) -> nn.Module:
    """The fixed MBConv (expand 1, 3x3) after the stem; the identity in a space without one."""
    if not space.has_first_block:
        return nn.Identity()
    return shortcut_block(InvertedResidual(space.stem_out, space.first_block_out, 3, 1, 1, space.activation))


def make_feature_mix(space: SearchSpace) -> nn.Module:
    return ConvBNAct(space.last_channels, space.feature_mix_out, 1, act=space.activation)


def shortcut_block(body: nn.Module) -> nn.Module:
    """Wrap an op body in the identity shortcut when it keeps its shape; `zero` is the shortcut alone."""
    if isinstance(body, InvertedResidual) and body.stride == 1 and body.in_ch == body.out_ch:
        return Residual(body)
    return body


def init_weights(model: nn.Module, residual: tuple[InvertedResidual, ...] = (), residual_scale: float = 0.0) -> None:
    """He init for convs (fan-out), unit BN, small normal init for the classifier.

    The last BN of every body in `residual` starts at `residual_scale` (0: those residual branches start
    as the identity). The supernet uses it for its shape-keeping candidates: the scale of the residual
    stream then does not jump when the sampled path changes.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
    for body in residual:
        nn.init.constant_(body.project[1].weight, residual_scale)  # project = conv, BN


@overload
def build_net(arch: Arch) -> ProxylessNet: ...


@overload
def build_net(arch: TreeArch) -> TreeNet: ...


def build_net(arch: Arch | TreeArch) -> ProxylessNet | TreeNet:
    """A plain `nn.Module` for `arch`, freshly initialised: a `ProxylessNet`, or for a tree-cell `TreeArch`
    a `proxyless.tree.net.TreeNet`."""
    if isinstance(arch, Arch):
        return ProxylessNet(arch)
    from proxyless.tree.net import TreeNet  # which imports init_weights from here

    return TreeNet(arch)
