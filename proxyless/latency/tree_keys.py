"""Latency-table keys of tree-cell nets: each edge op at its place, and the fixed parts around the cells.

    TreeKey(kind="edge", input_size=32, in_channels=12, out_channels=12, op="sep_k5", stride=1, batch=32)

`kind` is one of: "tree_stem" (3x3 conv + BN), "tree_frame" (a residual block without its cell: in_bottle,
out_bottle, final BN, shortcut pooling and zero padding, the add; `width` is the cell's width, `op` the
shortcut's pooling, with "+bn" for the final BN), "edge" (one edge op, `op` its text, at its channels and
stride) and "tree_head" (BN + ReLU + pool + linear). A net's predicted latency is the sum over its stem,
frames, edges and head; what a cell adds besides its edges (splitting, the merges' additions, the branch
BNs) is left to the table's calibration (`proxyless lut validate`), like the MBConv tables' per-call
overhead.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from torch import nn

from proxyless.tree.arch import BlockShape, PyramidBackbone, TreeArch, edge_input_size
from proxyless.tree.net import TreeBlock, make_tree_head, make_tree_stem
from proxyless.tree.ops import parse_edge_op
from proxyless.tree.space import TreeSpace

if TYPE_CHECKING:
    from proxyless.latency.keys import Context

TREE_KINDS = ("tree_stem", "tree_frame", "edge", "tree_head")
_SIZE_FIELDS = ("input_size", "in_channels", "out_channels", "width", "stride", "batch")


@dataclass(frozen=True, order=True)
class TreeKey:
    kind: str
    input_size: int
    in_channels: int
    out_channels: int
    op: str = ""
    width: int = 1
    stride: int = 1
    batch: int = 1
    dtype: str = "float32"
    backend: str = "torch-cpu"

    def __post_init__(self) -> None:
        if self.kind not in TREE_KINDS:
            raise ValueError(f"tree latency key kind must be one of {TREE_KINDS}, got {self.kind!r}")
        for name in _SIZE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"latency key field '{name}' must be a positive integer, got {value!r}")
        if not all(isinstance(getattr(self, name), str) for name in ("op", "dtype", "backend")):
            raise ValueError("latency key fields 'op', 'dtype' and 'backend' must be strings")
        if self.kind == "edge":
            parse_edge_op(self.op)  # an EdgeOpError (a ValueError) names a bad op

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TreeKey:
        known = [f.name for f in fields(cls)]
        required = [f.name for f in fields(cls) if f.default is MISSING]
        if not isinstance(data, dict) or set(data) - set(known) or not set(required) <= set(data):
            raise ValueError(f"a tree latency key is an object with fields {known} (the first {len(required)} "
                             f"required), got {data!r}")
        return cls(**data)

    def describe(self) -> str:
        shape = f"{self.input_size}x{self.input_size}x{self.in_channels}->{self.out_channels}"
        detail = {"edge": f" {self.op} s{self.stride}", "tree_frame": f" width {self.width} s{self.stride} {self.op}"}
        return f"{self.kind} {shape}{detail.get(self.kind, '')}"


def _block_shape(key: TreeKey) -> BlockShape:
    return BlockShape(0, 0, key.in_channels, key.width, key.out_channels, key.stride, key.input_size)


def tree_module_for_key(key: TreeKey) -> nn.Module:
    """The module whose latency `key` stands for, in eval mode."""
    if key.kind == "tree_stem":
        module = make_tree_stem(key.out_channels)
    elif key.kind == "tree_frame":
        cell = nn.Identity() if key.stride == 1 else nn.MaxPool2d(1, key.stride)  # the map the cell would give
        module = TreeBlock(_block_shape(key), cell, key.op.split("+")[0], key.op.endswith("+bn"))
    elif key.kind == "edge":
        module = parse_edge_op(key.op).build(key.in_channels, key.out_channels, key.stride)
    else:
        module = nn.Sequential(make_tree_head(key.in_channels), nn.Linear(key.in_channels, key.out_channels))
    return module.eval()


def tree_fixed_keys(space: TreeSpace, context: Context) -> list[TreeKey]:
    """Stem, each block's frame, each fixed edge (one candidate at its place), head."""
    stem, *frames, head = _frame_keys(space.backbone, space.input_size, space.num_classes, asdict(context))
    fixed = [_edge_key(edge, str(edge.candidates[0]), asdict(context)) for edge in space.edges()
             if len(edge.candidates) == 1]
    return [stem, *frames, *fixed, head]


def tree_arch_keys(arch: TreeArch, context: Context) -> list[TreeKey]:
    """The keys whose latencies add up to `arch`'s: stem, frames, every edge, head."""
    shared = asdict(context)
    stem, *frames, head = _frame_keys(arch.backbone, arch.input_size, arch.num_classes, shared)
    edges = [TreeKey("edge", edge_input_size(block, slot.path), slot.in_channels, slot.out_channels, str(slot.op),
                     stride=slot.stride, **shared)
             for block, cell in zip(arch.blocks(), arch.cells)
             for slot in cell.edges(block.width, block.width, block.stride)]
    return [stem, *frames, *edges, head]


def _frame_keys(backbone: PyramidBackbone, input_size: int, num_classes: int,
                shared: dict[str, Any]) -> list[TreeKey]:
    """Stem, each block's frame, head: what every net of a backbone has."""
    frame_op = backbone.downsample + ("+bn" if backbone.final_bn else "")
    blocks = backbone.blocks(input_size)
    final_size = -(-blocks[-1].input_size // blocks[-1].stride)
    return [
        TreeKey("tree_stem", input_size, 3, backbone.stem_channels, **shared),
        *(TreeKey("tree_frame", b.input_size, b.in_channels, b.out_channels, frame_op, b.width, b.stride, **shared)
          for b in blocks),
        TreeKey("tree_head", final_size, blocks[-1].out_channels, num_classes, **shared),
    ]


def tree_candidate_keys(space: TreeSpace, context: Context) -> list[list[TreeKey]]:
    """For each searched edge, the key of each candidate."""
    shared = asdict(context)
    return [[_edge_key(edge, str(op), shared) for op in edge.candidates] for edge in space.layers()]


def _edge_key(edge: Any, op: str, shared: dict[str, Any]) -> TreeKey:
    return TreeKey("edge", edge.input_size, edge.in_channels, edge.out_channels, op, stride=edge.stride, **shared)
