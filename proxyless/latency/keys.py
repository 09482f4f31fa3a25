"""Latency-table keys: hashable records of one op at one input shape on one backend.

    OpKey(kind="mbconv", input_size=32, in_channels=16, out_channels=24, kernel=5, expand=3,
          stride=2, shortcut=False, batch=32, dtype="float32", backend="torch-cpu")

`kind` is one of: "stem" (conv 3x3 + BN + act), "mbconv" (an inverted-residual block, its shortcut
included when `shortcut`), "skip" (the 1x1 conv + BN projection of a `skip` op that changes the shape),
"feature_mix" (conv 1x1 + BN + act) and "classifier" (global pool + dropout + linear; `input_size` is
the map it pools); `act` is the space's activation.  `zero` ops, and `skip` where the shape is kept,
have no key: they cost nothing.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from proxyless.arch import Arch
from proxyless.layers import ACTIVATIONS
from proxyless.ops import MBConv, OpSpec, Skip
from proxyless.space import LayerSlot, SearchSpace

if TYPE_CHECKING:
    from proxyless.latency.tree_keys import TreeKey
    from proxyless.tree.arch import TreeArch
    from proxyless.tree.space import TreeSpace

KINDS = ("stem", "mbconv", "skip", "feature_mix", "classifier")
_SIZE_FIELDS = ("input_size", "in_channels", "out_channels", "kernel", "expand", "stride", "batch")


@dataclass(frozen=True, order=True)
class OpKey:
    kind: str
    input_size: int
    in_channels: int
    out_channels: int
    kernel: int = 1
    expand: int = 1
    stride: int = 1
    shortcut: bool = False
    batch: int = 1
    dtype: str = "float32"
    backend: str = "torch-cpu"
    act: str = "relu6"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"latency key kind must be one of {KINDS}, got {self.kind!r}")
        # typed fields, so that keys read from a file compare (and sort) with the keys of a space
        for name in _SIZE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"latency key field '{name}' must be a positive integer, got {value!r}")
        if not isinstance(self.shortcut, bool):
            raise ValueError(f"latency key field 'shortcut' must be true or false, got {self.shortcut!r}")
        if not (isinstance(self.dtype, str) and isinstance(self.backend, str)):
            raise ValueError(f"latency key fields 'dtype' and 'backend' must be strings, "
                             f"got {self.dtype!r} and {self.backend!r}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"latency key field 'act' must be one of {', '.join(ACTIVATIONS)}, got {self.act!r}")

    @property
    def output_size(self) -> int:
        return 1 if self.kind == "classifier" else (self.input_size + self.stride - 1) // self.stride

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> OpKey:
        """The inverse of `to_dict`; raises ValueError for anything but an object of OpKey fields."""
        known = [f.name for f in fields(cls)]
        required = [f.name for f in fields(cls) if f.default is MISSING]
        if not isinstance(data, dict) or set(data) - set(known) or not set(required) <= set(data):
            raise ValueError(f"a latency key is an object with fields {known} (the first {len(required)} "
                             f"required), got {data!r}")
        return cls(**data)

    def describe(self) -> str:
        shape = f"{self.input_size}x{self.input_size}x{self.in_channels}->{self.out_channels}"
        skip = " +skip" if self.shortcut else ""
        op = f" k{self.kernel} e{self.expand} s{self.stride}{skip}" if self.kind == "mbconv" else ""
        op += f" s{self.stride}" if self.kind == "skip" else ""
        act = f" {self.act}" if self.act != "relu6" else ""
        return f"{self.kind} {shape}{op}{act}"


@dataclass(frozen=True)
class Context:
    """What every key of one table shares: batch size, dtype and backend."""

    batch: int = 1
    dtype: str = "float32"
    backend: str = "torch-cpu"


def op_key(slot: LayerSlot, op: OpSpec, context: Context) -> OpKey | None:
    """The key of candidate `op` at searchable layer `slot`; None where it computes nothing."""
    if slot.is_identity(op):
        return None
    shared = {**asdict(context), "act": slot.activation}
    if isinstance(op, Skip):
        return OpKey("skip", slot.input_size, slot.in_channels, slot.out_channels, stride=slot.stride, **shared)
    assert isinstance(op, MBConv), op
    return OpKey("mbconv", slot.input_size, slot.in_channels, slot.out_channels, op.kernel, op.expand,
                 slot.stride, slot.keeps_shape, **shared)


def key_from_dict(data: Any) -> OpKey | TreeKey:
    """An `OpKey`, or for a tree-cell table's entry (its kind says so) a `latency.tree_keys.TreeKey`."""
    from proxyless.latency.tree_keys import TREE_KINDS, TreeKey

    tree = isinstance(data, dict) and data.get("kind") in TREE_KINDS
    return TreeKey.from_dict(data) if tree else OpKey.from_dict(data)


def fixed_keys(space: SearchSpace | TreeSpace, context: Context) -> list[OpKey] | list[TreeKey]:
    """Keys of the parts every architecture of `space` has: stem, first block (if any), feature mix,
    classifier; of a tree-cell space, see `latency.tree_keys`."""
    if not isinstance(space, SearchSpace):
        from proxyless.latency.tree_keys import tree_fixed_keys

        return tree_fixed_keys(space, context)
    stem_size, final_size = space.stem_size, space.final_size
    shared = {**asdict(context), "act": space.activation}
    first = [OpKey("mbconv", stem_size, space.stem_out, space.first_block_out, 3, 1, 1,
                   space.stem_out == space.first_block_out, **shared)] if space.has_first_block else []
    return [
        OpKey("stem", space.input_size, 3, space.stem_out, 3, 1, space.stem_stride, **shared),
        *first,
        OpKey("feature_mix", final_size, space.last_channels, space.feature_mix_out, **shared),
        OpKey("classifier", final_size, space.feature_mix_out, space.num_classes, **shared),
    ]


def candidate_keys(space: SearchSpace | TreeSpace, context: Context) -> list[list[OpKey | None]] | list[list[TreeKey]]:
    """For each searchable layer, the key of each candidate (None where it computes nothing); of a
    tree-cell space, each searched edge's."""
    if not isinstance(space, SearchSpace):
        from proxyless.latency.tree_keys import tree_candidate_keys

        return tree_candidate_keys(space, context)
    return [[op_key(slot, op, context) for op in slot.candidates] for slot in space.layers()]


def all_keys(space: SearchSpace | TreeSpace, context: Context) -> list[OpKey] | list[TreeKey]:
    """Every distinct key a table needs to cover `space`, in a stable order."""
    keys = fixed_keys(space, context) + [k for layer in candidate_keys(space, context) for k in layer if k]
    return list(dict.fromkeys(keys))


def arch_keys(arch: Arch | TreeArch, context: Context) -> list[OpKey] | list[TreeKey]:
    """The keys whose latencies add up to `arch`'s (fixed parts, then each non-zero layer; of a tree-cell
    net, see `latency.tree_keys`)."""
    if not isinstance(arch, Arch):
        from proxyless.latency.tree_keys import tree_arch_keys

        return tree_arch_keys(arch, context)
    layer_keys = [op_key(slot, op, context) for slot, op in zip(arch.space.layers(), arch.ops)]
    return fixed_keys(arch.space, context) + [k for k in layer_keys if k is not None]
