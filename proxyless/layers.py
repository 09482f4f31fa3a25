"""Building blocks shared by the standalone network and the supernet.

Batch norm uses eps 1e-3 and momentum 0.1, as in the published ProxylessNAS configurations.
Activations are named by the space ("relu6", as in the paper, or "relu", as in NAS-Bench-Macro).
"""

from __future__ import annotations

import torch
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.1


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round `value` to the nearest multiple of `divisor`, never dropping more than 10%.

    >>> make_divisible(32 * 0.35), make_divisible(24 * 1.4), make_divisible(5.6)
    (16, 32, 8)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU}


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def activation(name: str) -> nn.Module:
    """The activation module named `name` (a key of ACTIVATIONS), in place."""
    return ACTIVATIONS[name](inplace=True)


class ConvBNAct(nn.Sequential):
    """Conv (no bias) + BN + the activation named `act` (none when `act` is None)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = "relu6"
    ) -> None:
        conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        layers: list[nn.Module] = [conv, batch_norm(out_ch)]
        if act is not None:
            layers.append(activation(act))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MBConv body: [1x1 expand + BN + act] -> KxK depthwise + BN + act -> 1x1 project + BN.

    The expansion conv is left out when `expand == 1`; mid channels are round(in_ch * expand).
    No shortcut here: `Residual` adds it where the block keeps its shape.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, act: str = "relu6") -> None:
        super().__init__()
        mid_ch = round(in_ch * expand)
        self.in_ch, self.out_ch, self.kernel, self.stride, self.expand = in_ch, out_ch, kernel, stride, expand
        self.expand_conv = ConvBNAct(in_ch, mid_ch, 1, act=act) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid_ch, mid_ch, kernel, stride, groups=mid_ch, act=act)
        self.project = ConvBNAct(mid_ch, out_ch, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand_conv(x)  # (B, mid, H, W)
        x = self.depthwise(x)  # (B, mid, H/s, W/s)
        return self.project(x)  # (B, out, H/s, W/s)


class Residual(nn.Module):
    """y = x + body(x): the identity shortcut of a block that keeps its shape."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
