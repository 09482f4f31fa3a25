"""Tree-cell PyramidNets as data: a backbone, one tree cell per residual block, the task.

The paper's CIFAR-10 network is a PyramidNet (Han et al., 2017) whose residual blocks' 3x3 convolution
is replaced by a tree-structured cell (Cai et al., "Path-Level Network Transformation", 2018). Its
`arch.json`:

    {
      "format": "proxyless-tree-arch/1",
      "name": "proxyless_cifar", "input_size": 32, "num_classes": 10,
      "backbone": {"stem_channels": 16, "alpha": 84, "blocks_per_stage": 18, "stages": 3,
                   "bottleneck": 4, "channel_multiple": 2, "downsample": "avg", "final_bn": true},
      "cells": [                                           # one per residual block
        {"branches": [{"edge": "conv_k3_g2_shuffle", "expand": 2,
                       "child": {"split": "split", "merge": "add", "branch_bn": true,
                                 "branches": [{"edge": "identity", "child": {...}}, ...]}}]},
        ...
      ]
    }

A residual block (`BlockShape`) is: in_bottle (BN + 1x1 conv to the block's width), the cell (width ->
width), out_bottle (BN + ReLU + 1x1 conv to width · bottleneck), a final BN, plus the shortcut (identity,
or 2x2 pooling where the block has stride 2) zero-padded to the block's output channels.

A cell is a tree of nodes (`TreeNode`). A node hands its input to its branches (`split`: "copy" gives
every branch all channels, "split" gives each a slice), each branch runs its edge op and then its child
node, if any, and the node merges the branch outputs (`merge`: "add" or "concat"). With `branch_bn` a
branch returns BN(child(edge(x))) + edge(x). A node with one branch neither splits nor merges. A branch
with a child widens its edge by `expand`: the edge maps to `expand` times the branch's output channels and
the child maps them back. The block's stride is taken by the root node's edges.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

from proxyless.arch import ArchError
from proxyless.errors import UserError
from proxyless.tree.ops import EdgeOp, EdgeOpError, parse_edge_op

TREE_ARCH_FORMAT = "proxyless-tree-arch/1"
SPLITS = ("copy", "split")
MERGES = ("add", "concat")
DOWNSAMPLES = ("avg", "max")


def split_sizes(channels: int, parts: int) -> list[int]:
    """`channels` in `parts` nearly equal slices, the first ones one larger: split_sizes(10, 3) == [4, 3, 3]."""
    return [channels // parts + (i < channels % parts) for i in range(parts)]


@dataclass(frozen=True)
class Branch:
    edge: EdgeOp
    child: TreeNode | None = None
    expand: int = 1  # the edge's output channels over the branch's; needs a child to bring them back

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"edge": str(self.edge)}
        if self.expand != 1:
            data["expand"] = self.expand
        if self.child is not None:
            data["child"] = self.child.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str, path: str) -> Branch:
        """`where` names the cell, `path` the branch in it ('0.1': the root's branch 0, its child's branch 1)."""
        _check_keys(data, {"edge"}, {"expand", "child"}, f"{where}, branch {path}")
        try:
            edge = parse_edge_op(data["edge"])
        except EdgeOpError as err:
            raise ArchError(f"{where}, branch {path}: {err}") from None
        child = None if data.get("child") is None else TreeNode.from_dict(data["child"], where, path)
        return cls(edge, child, data.get("expand", 1))


@dataclass(frozen=True)
class TreeNode:
    branches: tuple[Branch, ...]
    split: str | None = None  # "copy" | "split"; None for a single branch
    merge: str | None = None  # "add" | "concat"; None for a single branch
    branch_bn: bool = False

    def __post_init__(self) -> None:
        if not self.branches:
            raise ArchError("a tree node needs at least one branch")
        if len(self.branches) == 1 and (self.split, self.merge) != (None, None):
            raise ArchError("a node with one branch neither splits nor merges; leave out 'split' and 'merge'")
        if len(self.branches) > 1 and (self.split not in SPLITS or self.merge not in MERGES):
            raise ArchError(f"a node with {len(self.branches)} branches needs 'split' ({' or '.join(SPLITS)}) and "
                            f"'merge' ({' or '.join(MERGES)}), got {self.split!r} and {self.merge!r}")
        if not isinstance(self.branch_bn, bool):
            raise ArchError(f"'branch_bn' must be true or false, got {self.branch_bn!r}")
        for branch in self.branches:
            if type(branch.expand) is not int or branch.expand < 1:
                raise ArchError(f"'expand' must be a positive integer, got {branch.expand!r}")
            if branch.expand != 1 and (branch.child is None or self.branch_bn):
                raise ArchError("'expand' needs a child node to map the channels back, and no branch_bn")

    def in_sizes(self, channels: int) -> list[int]:
        """The input channels of each branch: all of them ("copy", one branch) or a slice ("split")."""
        return split_sizes(channels, len(self.branches)) if self.split == "split" else [channels] * len(self.branches)

    def out_sizes(self, channels: int) -> list[int]:
        """The output channels of each branch, so that merging them gives `channels`."""
        return split_sizes(channels, len(self.branches)) if self.merge == "concat" else [channels] * len(self.branches)

    def edges(self, in_ch: int, out_ch: int, stride: int, path: str = "") -> Iterator[EdgeSlot]:
        """Every edge under this node, depth first, with its channels, stride and path ('0.1.0': root
        edge 0, its child's branch 1, that child's branch 0)."""
        for i, (branch, edge_in, out) in enumerate(zip(self.branches, self.in_sizes(in_ch), self.out_sizes(out_ch))):
            where = f"{path}.{i}" if path else str(i)
            edge_out = out * branch.expand if branch.child is not None else out
            yield EdgeSlot(where, branch.edge, edge_in, edge_out, stride)
            if branch.child is not None:
                yield from branch.child.edges(edge_out, out, 1, where)

    def to_dict(self) -> dict[str, Any]:
        head = {"split": self.split, "merge": self.merge} if len(self.branches) > 1 else {}
        return {**head, **({"branch_bn": True} if self.branch_bn else {}),
                "branches": [branch.to_dict() for branch in self.branches]}

    @classmethod
    def from_dict(cls, data: Any, where: str = "cell", path: str = "") -> TreeNode:
        """The node at `path` of the cell named by `where` ('' for the root)."""
        node = f"{where}, node {path}" if path else where
        _check_keys(data, {"branches"}, {"split", "merge", "branch_bn"}, node)
        if not isinstance(data["branches"], list):
            raise ArchError(f"{node}: 'branches' must be a list of {{'edge': ..., 'child': ...}} objects")
        branches = tuple(Branch.from_dict(b, where, f"{path}.{i}" if path else str(i))
                         for i, b in enumerate(data["branches"]))
        try:
            return cls(branches, data.get("split"), data.get("merge"), data.get("branch_bn", False))
        except ArchError as err:
            raise ArchError(f"{node}: {err}") from None

    def describe(self) -> str:
        """One line: 'split-add-bn(identity > add(sep_k7, max_k3), ...)'; a single branch is 'edge > child'."""
        parts = []
        for branch in self.branches:
            edge = f"{branch.edge}×{branch.expand}" if branch.expand != 1 else str(branch.edge)
            parts.append(f"{edge} > {branch.child.describe()}" if branch.child else edge)
        if len(self.branches) == 1:
            return parts[0]
        scheme = ("split-" if self.split == "split" else "") + self.merge + ("-bn" if self.branch_bn else "")
        return f"{scheme}({', '.join(parts)})"


@dataclass(frozen=True)
class EdgeSlot:
    """An edge of a cell at its place in a block: what `EdgeOp.build` is called with."""

    path: str
    op: EdgeOp
    in_channels: int
    out_channels: int
    stride: int


@dataclass(frozen=True)
class BlockShape:
    """A residual block's place: input channels, cell width, output channels, stride, input map size."""

    index: int
    stage: int
    in_channels: int
    width: int
    out_channels: int
    stride: int
    input_size: int


def edge_input_size(block: BlockShape, path: str) -> int:
    """The map size an edge at `path` of `block`'s cell sees: the block's for the root node's edges (which
    take its stride), the strided one below them."""
    return block.input_size if "." not in path else -(-block.input_size // block.stride)


@dataclass(frozen=True)
class PyramidBackbone:
    """PyramidNet with bottleneck blocks: the width grows by alpha / (blocks) per block, from the stem's.

    Block k (1-based) has width round(stem + k · alpha / blocks), rounded down to a multiple of
    `channel_multiple` (the groups of the cell's grouped convs), and outputs width · bottleneck channels;
    the first block of every stage after the first has stride 2.
    """

    stem_channels: int = 16
    alpha: float = 84
    blocks_per_stage: int = 18
    stages: int = 3
    bottleneck: int = 4
    channel_multiple: int = 1
    downsample: str = "avg"  # the stride-2 shortcut's 2x2 pooling
    final_bn: bool = True  # a BN after the out_bottle of every block

    def __post_init__(self) -> None:
        for field in ("stem_channels", "blocks_per_stage", "stages", "bottleneck", "channel_multiple"):
            value = getattr(self, field)
            if type(value) is not int or value < 1:
                raise ArchError(f"backbone: '{field}' must be a positive integer, got {value!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float) or not 0 <= self.alpha < 1e6:
            raise ArchError(f"backbone: 'alpha' (the total widening) must be a number >= 0, got {self.alpha!r}")
        if self.downsample not in DOWNSAMPLES:
            raise ArchError(f"backbone: 'downsample' must be one of {', '.join(DOWNSAMPLES)}, got {self.downsample!r}")
        if not isinstance(self.final_bn, bool):
            raise ArchError(f"backbone: 'final_bn' must be true or false, got {self.final_bn!r}")

    @property
    def num_blocks(self) -> int:
        return self.blocks_per_stage * self.stages

    def widths(self) -> list[int]:
        """Each residual block's cell width, e.g. [18, 18, 20, 22, 24, 24, ...] for the defaults (multiple 2)."""
        step, planes, widths = self.alpha / self.num_blocks, float(self.stem_channels), []
        for _ in range(self.num_blocks):
            planes += step  # accumulated as PyramidNet's reference code does, so rounding ties land alike
            width = int(round(planes))
            widths.append(width - width % self.channel_multiple)
        return widths

    def blocks(self, input_size: int) -> list[BlockShape]:
        shapes, in_ch, size = [], self.stem_channels, input_size
        for index, width in enumerate(self.widths()):
            stage, first = divmod(index, self.blocks_per_stage)
            stride = 2 if stage > 0 and first == 0 else 1
            shapes.append(BlockShape(index, stage, in_ch, width, width * self.bottleneck, stride, size))
            in_ch, size = width * self.bottleneck, size // stride
        return shapes

    def to_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "backbone") -> PyramidBackbone:
        names = {field.name for field in fields(cls)}
        _check_keys(data, set(), names, where)
        return cls(**data)


@dataclass(frozen=True)
class TreeArch:
    """A tree-cell PyramidNet: the backbone, one cell per residual block, and the task."""

    backbone: PyramidBackbone
    cells: tuple[TreeNode, ...]
    name: str = ""
    input_size: int = 32
    num_classes: int = 10

    def __post_init__(self) -> None:
        for field in ("input_size", "num_classes"):
            value = getattr(self, field)
            if type(value) is not int or value < 1:
                raise ArchError(f"'{field}' must be a positive integer, got {value!r}")
        halvings = 2 ** (self.backbone.stages - 1)
        if self.input_size % halvings:
            raise ArchError(f"input size {self.input_size} px is halved {self.backbone.stages - 1} times; "
                            f"use a multiple of {halvings}")
        if len(self.cells) != self.backbone.num_blocks:
            raise ArchError(f"{len(self.cells)} cells for {self.backbone.num_blocks} residual blocks "
                            f"({self.backbone.stages} stages of {self.backbone.blocks_per_stage}); give one per block")
        for block in self.blocks():
            _check_block(block, self.cells[block.index])

    @property
    def label(self) -> str:
        return self.name or "tree-pyramidnet"

    @property
    def final_channels(self) -> int:
        return self.blocks()[-1].out_channels

    def blocks(self) -> list[BlockShape]:
        return self.backbone.blocks(self.input_size)

    def op_strings(self) -> list[str]:
        """Every edge's op, block by block, each cell depth first (the order of `TreeNode.edges`): what a
        search logs as the architecture it holds."""
        return [str(slot.op) for block, cell in zip(self.blocks(), self.cells)
                for slot in cell.edges(block.width, block.width, block.stride)]

    def with_task(self, input_size: int, num_classes: int) -> TreeArch:
        """The same network for another image size (the head pools globally) or class count."""
        return replace(self, input_size=input_size, num_classes=num_classes)

    def to_dict(self) -> dict[str, Any]:
        return {"format": TREE_ARCH_FORMAT, "name": self.name, "input_size": self.input_size,
                "num_classes": self.num_classes, "backbone": self.backbone.to_dict(),
                "cells": [cell.to_dict() for cell in self.cells]}

    @classmethod
    def from_dict(cls, data: Any, where: str = "architecture") -> TreeArch:
        _check_keys(data, {"backbone", "cells"}, {"format", "name", "input_size", "num_classes"}, where)
        if data.get("format", TREE_ARCH_FORMAT) != TREE_ARCH_FORMAT:
            raise ArchError(f"{where}: unsupported format {data['format']!r}; expected {TREE_ARCH_FORMAT!r}")
        if not isinstance(data["cells"], list):
            raise ArchError(f"{where}: 'cells' must be a list with one tree cell per residual block")
        try:
            backbone = PyramidBackbone.from_dict(data["backbone"])
            cells = tuple(TreeNode.from_dict(cell, f"block {i} cell") for i, cell in enumerate(data["cells"]))
            return cls(backbone, cells, str(data.get("name", "")), data.get("input_size", 32),
                       data.get("num_classes", 10))
        except UserError as err:
            raise ArchError(f"{where}: {err}") from None

    def summary(self) -> str:
        """One line per residual block: index, stage, map size, channels, stride and the cell."""
        return "\n".join(
            f"{b.index:>3}  stage {b.stage}  {b.input_size:>3}px  {b.in_channels:>4} -> {b.width:>3} -> "
            f"{b.out_channels:<4} s{b.stride}  {cell.describe()}"
            for b, cell in zip(self.blocks(), self.cells))


def _check_block(block: BlockShape, cell: TreeNode) -> None:
    """Raise ArchError naming the block and edge where the cell does not fit the block's channels."""
    where = f"block {block.index} (stage {block.stage}, width {block.width})"
    if block.width < 1 or block.out_channels < block.in_channels:
        raise ArchError(f"{where}: maps {block.in_channels} to {block.out_channels} channels, but the shortcut can "
                        "only pad channels; raise alpha or the bottleneck")
    for slot in cell.edges(block.width, block.width, block.stride):
        try:
            slot.op.check(slot.in_channels, slot.out_channels, slot.stride)
        except EdgeOpError as err:
            raise ArchError(f"{where}, edge {slot.path}: {err}") from None
    _check_nodes(cell, block.width, block.width, where, "root")


def _check_nodes(node: TreeNode, in_ch: int, out_ch: int, where: str, path: str) -> None:
    """Every node must have at least one channel per branch after splitting."""
    if min(node.in_sizes(in_ch) + node.out_sizes(out_ch)) < 1:
        raise ArchError(f"{where}, node {path}: {len(node.branches)} branches cannot split {in_ch} -> {out_ch} "
                        "channels")
    for i, (branch, out) in enumerate(zip(node.branches, node.out_sizes(out_ch))):
        if branch.child is not None:
            _check_nodes(branch.child, out * branch.expand, out, where, str(i) if path == "root" else f"{path}.{i}")


def _check_keys(data: Any, required: set[str], optional: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise ArchError(f"{where}: expected an object, got {type(data).__name__}")
    missing = sorted(required - data.keys())
    if missing:
        raise ArchError(f"{where}: missing field {missing[0]!r}")
    unknown = sorted(data.keys() - required - optional)
    if unknown:
        raise ArchError(f"{where}: unknown field {unknown[0]!r}; known: {', '.join(sorted(required | optional))}")
