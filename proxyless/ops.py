"""Candidate operations: text at the edges, frozen records inside.

Grammar (one token per op):

    mb_k{K}_e{E}   inverted residual (MBConv): 1x1 expand to round(in * E) channels + BN + ReLU6
                   (omitted when E == 1), KxK depthwise with the block's stride + BN + ReLU6,
                   1x1 linear projection + BN; no biases.  K in {3, 5, 7}, E in {1, 3, 6}.
    zero           skip the block: the output is the identity shortcut.  Only valid where the
                   block keeps its shape (stride 1, in == out channels).
    skip           the identity where the block keeps its shape (then the same net as `zero`), and
                   a 1x1 conv with the block's stride + BN (no activation) where the shape changes,
                   so a net may skip any layer (NAS-Bench-Macro's "identity" candidate).

    >>> parse_op("mb_k5_e3")
    MBConv(kernel=5, expand=3)
    >>> format_op(parse_op("zero"))
    'zero'

Every op record builds its module through one factory signature, `build(in_ch, out_ch, stride, act)`
(`act` names the space's activation, see `proxyless.layers.ACTIVATIONS`).
The identity shortcut is not part of the op: the block that holds it adds the shortcut
(see `proxyless.layers.Residual`), so a supernet can mix ops under one shared shortcut.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from torch import nn

from proxyless.errors import UserError
from proxyless.layers import ConvBNAct, InvertedResidual

KERNEL_SIZES = (3, 5, 7)
EXPAND_RATIOS = (1, 3, 6)


class OpError(UserError):
    """Text that names no candidate op; the message lists the known ones."""


@dataclass(frozen=True)
class MBConv:
    """Inverted residual body (without the shortcut)."""

    kernel: int
    expand: int

    def __post_init__(self) -> None:
        # `type(...) is int`: 3.0 and True compare equal to 3 and 1 but would format as 'mb_k3.0_eTrue'
        if type(self.kernel) is not int or self.kernel not in KERNEL_SIZES:
            raise ValueError(f"MBConv kernel must be one of {KERNEL_SIZES}, got {self.kernel!r}")
        if type(self.expand) is not int or self.expand not in EXPAND_RATIOS:
            raise ValueError(f"MBConv expand ratio must be one of {EXPAND_RATIOS}, got {self.expand!r}")

    def __str__(self) -> str:
        return f"mb_k{self.kernel}_e{self.expand}"

    def build(self, in_ch: int, out_ch: int, stride: int, act: str = "relu6") -> nn.Module:
        return InvertedResidual(in_ch, out_ch, self.kernel, stride, self.expand, act)


@dataclass(frozen=True)
class Zero:
    """No computation: the block reduces to its identity shortcut."""

    def __str__(self) -> str:
        return "zero"

    def build(self, in_ch: int, out_ch: int, stride: int, act: str = "relu6") -> nn.Module:
        if stride != 1 or in_ch != out_ch:
            raise ValueError(f"zero op needs stride 1 and in == out channels, got {in_ch}->{out_ch} stride {stride}")
        return nn.Identity()


@dataclass(frozen=True)
class Skip:
    """The identity where the shape is kept, a 1x1 conv + BN projection where it changes."""

    def __str__(self) -> str:
        return "skip"

    def build(self, in_ch: int, out_ch: int, stride: int, act: str = "relu6") -> nn.Module:
        if stride == 1 and in_ch == out_ch:
            return nn.Identity()
        return ConvBNAct(in_ch, out_ch, 1, stride, act=None)


OpSpec = MBConv | Zero | Skip


def is_identity(op: OpSpec, in_ch: int, out_ch: int, stride: int) -> bool:
    """Whether `op` computes nothing at a layer of this shape: the block is then its input alone."""
    keeps_shape = stride == 1 and in_ch == out_ch
    return isinstance(op, Zero) or (isinstance(op, Skip) and keeps_shape)


def _make_registry(ops: list[OpSpec]) -> Mapping[str, OpSpec]:
    registry: dict[str, OpSpec] = {}
    for op in ops:
        name = str(op)
        if name in registry:
            raise ValueError(f"duplicate candidate op name {name!r}")
        registry[name] = op
    return MappingProxyType(registry)


#: Every op name the grammar accepts, mapped to its record (read-only).
CANDIDATE_OPS: Mapping[str, OpSpec] = _make_registry(
    [MBConv(k, e) for k in KERNEL_SIZES for e in EXPAND_RATIOS] + [Zero(), Skip()]
)


def parse_op(text: str) -> OpSpec:
    """'mb_k3_e6' -> MBConv(kernel=3, expand=6); 'zero' -> Zero().

    Raises OpError (a ValueError) naming the known ops for anything else.
    """
    op = CANDIDATE_OPS.get(text.strip()) if isinstance(text, str) else None
    if op is None:
        known = ", ".join(CANDIDATE_OPS)
        raise OpError(f"unknown op {text!r}; known ops: {known}")
    return op


def format_op(op: OpSpec) -> str:
    """MBConv(kernel=3, expand=6) -> 'mb_k3_e6'; Zero() -> 'zero'."""
    return str(op)
