"""The ops on the edges of a tree cell: text at the edges, frozen records inside.

Grammar (one token per edge):

    conv_k{K}[_d{D}][_g{G}][_shuffle]   BN + ReLU + KxK conv (dilation D, G groups, no bias), then a channel
                                        shuffle over the G groups when `_shuffle` is given
    sep_k{K}[_d{D}][_g{G}][_shuffle]    BN + ReLU + KxK depthwise conv (dilation D) + 1x1 pointwise conv
                                        (G groups), then the optional shuffle: a depthwise-separable conv
    max_k{K}, avg_k{K}                  KxK max / average pooling (the average leaves the padding out);
                                        the edge keeps its channels
    identity                            the input as it is; keeps channels and map size

Convolutions are pre-activated (BN and ReLU before the weights, the original authors' ops order
"bn_act_weight"); pooling and identity edges have neither. Every edge pads to keep the map size at
stride 1 (K // 2 · D), so the branches of a node can be added or concatenated.

    >>> parse_edge_op("sep_k3_d2")
    EdgeOp(kind='sep', kernel=3, dilation=2, groups=1, shuffle=False)
    >>> str(parse_edge_op("conv_k3_g2_shuffle"))
    'conv_k3_g2_shuffle'

Every record builds its module through one signature, `build(in_ch, out_ch, stride)`, like the MBConv
records of `proxyless.ops`, so a mixed op can hold any of them.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from proxyless.errors import UserError

KINDS = ("conv", "sep", "max", "avg", "identity")
_PATTERN = re.compile(r"(conv|sep)_k(\d+)(?:_d(\d+))?(?:_g(\d+))?(_shuffle)?|(max|avg)_k(\d+)|(identity)")


class EdgeOpError(UserError):
    """Text that names no edge op, or an edge op that cannot connect the channels it is given."""


@dataclass(frozen=True)
class EdgeOp:
    """One edge of a tree cell: its kind and, for convolutions and pooling, the kernel and its options."""

    kind: str
    kernel: int = 1
    dilation: int = 1
    groups: int = 1
    shuffle: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EdgeOpError(f"unknown edge op kind {self.kind!r}; known kinds: {', '.join(KINDS)}")
        for field in ("kernel", "dilation", "groups"):
            value = getattr(self, field)
            if type(value) is not int or value < 1:  # not bool, not 3.0: they would format wrongly
                raise EdgeOpError(f"edge op {field} must be a positive integer, got {value!r}")
        if self.kernel % 2 == 0:
            raise EdgeOpError(f"edge op kernel must be odd (padding keeps the map size), got {self.kernel}")
        if self.kind == "identity" and self.kernel != 1:
            raise EdgeOpError("an identity edge has no kernel")
        if self.kind in ("max", "avg", "identity") and (self.dilation, self.groups, self.shuffle) != (1, 1, False):
            raise EdgeOpError(f"a {self.kind} edge takes no dilation, groups or shuffle")
        if self.shuffle and self.groups == 1:
            raise EdgeOpError("a channel shuffle needs groups > 1 (it permutes the groups' channels)")

    def __str__(self) -> str:
        if self.kind == "identity":
            return "identity"
        text = f"{self.kind}_k{self.kernel}"
        if self.kind in ("max", "avg"):
            return text
        text += f"_d{self.dilation}" if self.dilation > 1 else ""
        text += f"_g{self.groups}" if self.groups > 1 else ""
        return text + ("_shuffle" if self.shuffle else "")

    @property
    def keeps_channels(self) -> bool:
        """Pooling and identity edges cannot change the channel count."""
        return self.kind in ("max", "avg", "identity")

    def check(self, in_ch: int, out_ch: int, stride: int) -> None:
        """Raise EdgeOpError naming the problem when this edge cannot map in_ch to out_ch at `stride`."""
        if self.keeps_channels and in_ch != out_ch:
            raise EdgeOpError(f"{self} keeps its channels but has to map {in_ch} to {out_ch}")
        if self.kind == "identity" and stride != 1:
            raise EdgeOpError(f"identity cannot have stride {stride}; use a pooling or conv edge there")
        if in_ch % self.groups or out_ch % self.groups:
            raise EdgeOpError(f"{self}: {self.groups} groups do not divide {in_ch} -> {out_ch} channels")

    def build(self, in_ch: int, out_ch: int, stride: int = 1) -> nn.Module:
        """The module: (B, in_ch, H, W) -> (B, out_ch, ceil(H / stride), ceil(W / stride))."""
        self.check(in_ch, out_ch, stride)
        padding = self.kernel // 2 * self.dilation
        if self.kind == "identity":
            return nn.Identity()
        if self.kind == "max":
            return nn.MaxPool2d(self.kernel, stride, padding)
        if self.kind == "avg":
            return nn.AvgPool2d(self.kernel, stride, padding, count_include_pad=False)
        layers: OrderedDict[str, nn.Module] = OrderedDict(bn=nn.BatchNorm2d(in_ch), act=nn.ReLU())
        if self.kind == "conv":
            layers["conv"] = nn.Conv2d(in_ch, out_ch, self.kernel, stride, padding, self.dilation, self.groups,
                                       bias=False)
        else:
            layers["depthwise"] = nn.Conv2d(in_ch, in_ch, self.kernel, stride, padding, self.dilation, in_ch,
                                            bias=False)
            layers["pointwise"] = nn.Conv2d(in_ch, out_ch, 1, groups=self.groups, bias=False)
        if self.shuffle:
            layers["shuffle"] = nn.ChannelShuffle(self.groups)
        return nn.Sequential(layers)


def parse_edge_op(text: str) -> EdgeOp:
    """'sep_k5' -> EdgeOp('sep', 5); 'identity' -> EdgeOp('identity'); anything else raises EdgeOpError."""
    match = _PATTERN.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise EdgeOpError(f"unknown edge op {text!r}; write conv_k3[_d2][_g2][_shuffle], sep_k5[_d2], max_k3, "
                          "avg_k3 or identity")
    conv, kernel, dilation, groups, shuffle, pool, pool_kernel, identity = match.groups()
    if identity:
        op = EdgeOp("identity")
    elif pool:
        op = EdgeOp(pool, int(pool_kernel))
    else:
        op = EdgeOp(conv, int(kernel), int(dilation or 1), int(groups or 1), bool(shuffle))
    if str(op) != text.strip():  # one spelling per op: 'conv_k3_d1' is written 'conv_k3'
        raise EdgeOpError(f"edge op {text!r} is written {str(op)!r}")
    return op
