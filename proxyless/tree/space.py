"""A search space of tree-cell PyramidNets: a backbone and a cell *template* whose edges choose among ops.

Every residual block gets a cell of the template's shape (the same nodes, splits, merges, branch BNs and
widenings), but each edge of each block chooses its op on its own: a net of the space is one op per edge
per block, a `TreeArch`. The space as YAML (or JSON; the "format" line tells it from an MBConv space):

    format: proxyless-tree-space/1
    name: tree-tiny
    input_size: 32
    num_classes: 10
    backbone: {stem_channels: 8, alpha: 8, blocks_per_stage: 1, stages: 2, bottleneck: 2, channel_multiple: 2}
    cell:                                   # a tree node, as in arch.json, with "edges" instead of "edge"
      split: copy
      merge: add
      branches:
        - edges: [sep_k3, sep_k5, conv_k3]
          child: {split: copy, merge: add, branches: [{edges: [sep_k3, avg_k3, identity]}, {edges: [max_k3, identity]}]}
        - edges: [avg_k3, max_k3, sep_k3, identity]

An edge lists its candidates ("edges": [...], or "edge": one op for an edge that is not searched). Where a
candidate cannot connect an edge's place (`identity` at a stride-2 root edge, a pooling edge that would
have to change the channels) it is left out at that place only; an edge with one candidate left there is
fixed, and only edges with two or more are searched (`layers()`: the search's layers, in the depth-first
order of `TreeNode.edges`, block by block).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from proxyless.errors import UserError
from proxyless.space import SpaceError
from proxyless.tree.arch import MERGES, SPLITS, Branch, PyramidBackbone, TreeArch, TreeNode, edge_input_size
from proxyless.tree.ops import EdgeOp, EdgeOpError, parse_edge_op

TREE_SPACE_FORMAT = "proxyless-tree-space/1"


@dataclass(frozen=True)
class BranchTemplate:
    """A branch of a cell template: the candidate ops of its edge, its child node, the edge's widening."""

    candidates: tuple[EdgeOp, ...]
    child: CellTemplate | None = None
    expand: int = 1

    def to_dict(self) -> dict[str, Any]:
        ops = [str(op) for op in self.candidates]
        data: dict[str, Any] = {"edge": ops[0]} if len(ops) == 1 else {"edges": ops}
        if self.expand != 1:
            data["expand"] = self.expand
        if self.child is not None:
            data["child"] = self.child.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str) -> BranchTemplate:
        if not isinstance(data, dict) or ("edge" in data) == ("edges" in data):
            raise SpaceError(f"{where}: a branch is {{edges: [sep_k3, max_k3, ...], child: ..., expand: ...}} "
                             f"(or 'edge' for one fixed op), got {data!r}")
        unknown = sorted(str(k) for k in set(data) - {"edge", "edges", "child", "expand"})
        if unknown:
            raise SpaceError(f"{where}: unknown field(s) {unknown}; a branch has edges (or edge), child, expand")
        texts = data.get("edges", [data.get("edge")])
        if not isinstance(texts, list) or not texts:
            raise SpaceError(f"{where}: 'edges' must be a non-empty list of edge ops, e.g. [sep_k3, max_k3]")
        try:
            ops = tuple(parse_edge_op(text) for text in texts)
        except EdgeOpError as err:
            raise SpaceError(f"{where}: {err}") from None
        if len(set(ops)) != len(ops):
            raise SpaceError(f"{where}: each candidate once, got {', '.join(map(str, ops))}")
        child = None if data.get("child") is None else CellTemplate.from_dict(data["child"], f"{where}.child")
        return cls(ops, child, data.get("expand", 1))


@dataclass(frozen=True)
class CellTemplate:
    """A tree node whose edges are candidate sets: the shape every block's cell has."""

    branches: tuple[BranchTemplate, ...]
    split: str | None = None
    merge: str | None = None
    branch_bn: bool = False

    def fill(self, ops: Iterator[EdgeOp]) -> TreeNode:
        """The cell with `ops` on its edges, taken depth first (an edge, then its child's edges)."""
        branches = []
        for branch in self.branches:
            edge = next(ops)
            branches.append(Branch(edge, branch.child.fill(ops) if branch.child else None, branch.expand))
        return TreeNode(tuple(branches), self.split, self.merge, self.branch_bn)

    def candidate_sets(self) -> list[tuple[EdgeOp, ...]]:
        """Each edge's candidates, depth first (the order of `fill` and `TreeNode.edges`)."""
        return [ops for branch in self.branches
                for ops in [branch.candidates, *(branch.child.candidate_sets() if branch.child else [])]]

    def to_dict(self) -> dict[str, Any]:
        head = {"split": self.split, "merge": self.merge} if len(self.branches) > 1 else {}
        return {**head, **({"branch_bn": True} if self.branch_bn else {}),
                "branches": [branch.to_dict() for branch in self.branches]}

    @classmethod
    def from_dict(cls, data: Any, where: str = "cell") -> CellTemplate:
        if not isinstance(data, dict) or not isinstance(data.get("branches"), list) or not data["branches"]:
            raise SpaceError(f"{where}: a cell node is {{split: {'|'.join(SPLITS)}, merge: {'|'.join(MERGES)}, "
                             "branches: [...]}} with at least one branch")
        unknown = sorted(str(k) for k in set(data) - {"split", "merge", "branch_bn", "branches"})
        if unknown:
            raise SpaceError(f"{where}: unknown field(s) {unknown}; a node has split, merge, branch_bn, branches")
        branches = tuple(BranchTemplate.from_dict(b, f"{where}.branches[{i}]") for i, b in enumerate(data["branches"]))
        return cls(branches, data.get("split"), data.get("merge"), data.get("branch_bn", False))


@dataclass(frozen=True)
class EdgeLayer:
    """One edge of one block at its place, with the candidates that fit there; a searchable layer when it
    has two or more. Builds its candidates like an MBConv `LayerSlot`, so a `MixedOp` can hold them."""

    block: int
    path: str  # in the cell, as `TreeNode.edges` names it ('0.1': root branch 0, its child's branch 1)
    in_channels: int
    out_channels: int
    stride: int
    input_size: int
    candidates: tuple[EdgeOp, ...]

    def build(self, op: EdgeOp) -> nn.Module:
        return op.build(self.in_channels, self.out_channels, self.stride)

    def is_identity(self, op: EdgeOp) -> bool:
        """False: every edge's output is used (an `identity` edge passes its input on; there is no `zero`)."""
        return False

    def describe(self) -> str:
        return (f"block {self.block} edge {self.path} ({self.input_size}px, {self.in_channels}->{self.out_channels} "
                f"channels, stride {self.stride})")


@dataclass(frozen=True)
class TreeSpace:
    """Tree-cell PyramidNets: `backbone`, one `cell` template for every block, the task."""

    name: str
    backbone: PyramidBackbone
    cell: CellTemplate
    input_size: int = 32
    num_classes: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpaceError("space 'name' must be a non-empty string")
        try:  # the shape and the channels, checked by the architecture with the first op that fits everywhere
            self.arch_of([0] * len(self.layers()))
        except UserError as err:
            raise SpaceError(f"space {self.name!r}: {err}") from None

    def edges(self) -> list[EdgeLayer]:
        """Every edge of every block, depth first, with the candidates that fit its place; raises SpaceError
        naming an edge where none does."""
        edges = []
        for block in self.backbone.blocks(self.input_size):
            sets = self.cell.candidate_sets()
            shape = self.cell.fill(iter([ops[0] for ops in sets]))  # only the structure matters here
            for slot, ops in zip(shape.edges(block.width, block.width, block.stride), sets):
                fits = tuple(op for op in ops if _fits(op, slot.in_channels, slot.out_channels, slot.stride))
                layer = EdgeLayer(block.index, slot.path, slot.in_channels, slot.out_channels, slot.stride,
                                  edge_input_size(block, slot.path), fits)
                if not fits:
                    raise SpaceError(f"{layer.describe()}: none of {', '.join(map(str, ops))} fits there; add a conv "
                                     "or separable op (they can change channels and stride) to its edges")
                edges.append(layer)
        return edges

    def layers(self) -> list[EdgeLayer]:
        """The searched edges: those with two or more candidates at their place."""
        return [edge for edge in self.edges() if len(edge.candidates) > 1]

    def arch_of(self, indices: Sequence[int], name: str = "") -> TreeArch:
        """The net that picks candidate `indices[i]` at searched edge i (fixed edges keep their one op)."""
        picks = iter(indices)
        ops = [edge.candidates[next(picks)] if len(edge.candidates) > 1 else edge.candidates[0]
               for edge in self.edges()]
        assert next(picks, None) is None, "one index per searched edge"
        per_block = len(self.cell.candidate_sets())
        cells = tuple(self.cell.fill(iter(ops[i:i + per_block])) for i in range(0, len(ops), per_block))
        return TreeArch(self.backbone, cells, name, self.input_size, self.num_classes)

    def indices_of(self, arch: TreeArch) -> list[int]:
        """The indices that `arch_of` turns into `arch`; raises SpaceError naming an edge it cannot."""
        if (arch.backbone, arch.input_size) != (self.backbone, self.input_size):
            raise SpaceError(f"{arch.label} has another backbone or input size than space {self.name!r}")
        edges, ops = self.edges(), arch.op_strings()
        template = f"cells of the shape of space {self.name!r}, {len(self.cell.candidate_sets())} edges each"
        if len(edges) != len(ops):
            raise SpaceError(f"{arch.label} has {len(ops)} edges; expected {template}")
        indices = []
        for edge, op in zip(edges, ops):
            names = [str(c) for c in edge.candidates]
            if op not in names:
                raise SpaceError(f"{arch.label}: {edge.describe()} is {op}, not a candidate there ({', '.join(names)})")
            if len(names) > 1:
                indices.append(names.index(op))
        if self.arch_of(indices).cells != arch.cells:  # the same ops in a tree of another shape
            raise SpaceError(f"{arch.label}: expected {template}")
        return indices

    def with_task(self, input_size: int, num_classes: int) -> TreeSpace:
        return replace(self, input_size=input_size, num_classes=num_classes)

    def to_dict(self) -> dict[str, Any]:
        return {"format": TREE_SPACE_FORMAT, "name": self.name, "input_size": self.input_size,
                "num_classes": self.num_classes, "backbone": self.backbone.to_dict(), "cell": self.cell.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, where: str = "tree search space") -> TreeSpace:
        if not isinstance(data, dict):
            raise SpaceError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
        known = {"format", "name", "input_size", "num_classes", "backbone", "cell"}
        unknown = sorted(str(k) for k in set(data) - known)
        missing = sorted({"name", "backbone", "cell"} - set(data))
        if unknown or missing:
            raise SpaceError(f"{where}: {'unknown field(s) ' + str(unknown) if unknown else 'missing ' + str(missing)}"
                             f"; a tree space has {', '.join(sorted(known))}")
        if data.get("format", TREE_SPACE_FORMAT) != TREE_SPACE_FORMAT:
            raise SpaceError(f"{where}: unsupported format {data['format']!r}; expected {TREE_SPACE_FORMAT!r}")
        try:
            return cls(data["name"], PyramidBackbone.from_dict(data["backbone"]), CellTemplate.from_dict(data["cell"]),
                       data.get("input_size", 32), data.get("num_classes", 10))
        except UserError as err:
            raise SpaceError(f"{where}: {err}") from None


def _fits(op: EdgeOp, in_ch: int, out_ch: int, stride: int) -> bool:
    try:
        op.check(in_ch, out_ch, stride)
    except EdgeOpError:
        return False
    return True


def is_tree_space_data(data: Any) -> bool:
    """Whether loaded space data is a tree space (its "format" says so, or it has a cell template)."""
    return isinstance(data, dict) and (str(data.get("format", "")).startswith("proxyless-tree-space") or "cell" in data)


# -- presets ------------------------------------------------------------------------------------------

# 2 stages of one block (widths 12, 16; 24 and 32 channels out), a two-level tree with 4 searched edges per
# block: searchable and trainable on the embedded sample in seconds
TREE_TINY = TreeSpace(
    name="tree-tiny",
    backbone=PyramidBackbone(stem_channels=8, alpha=8, blocks_per_stage=1, stages=2, bottleneck=2, channel_multiple=2),
    cell=CellTemplate.from_dict({"split": "copy", "merge": "add", "branches": [
        {"edges": ["sep_k3", "sep_k5", "conv_k3"], "child": {"split": "copy", "merge": "add", "branches": [
            {"edges": ["sep_k3", "avg_k3", "identity"]}, {"edges": ["max_k3", "identity"]}]}},
        {"edges": ["avg_k3", "max_k3", "sep_k3", "identity"]}]}),
)

_PAPER_EDGES = ["sep_k3", "sep_k5", "sep_k7", "sep_k3_d2", "max_k3", "avg_k3", "identity"]


def _paper_level(depth: int) -> dict[str, Any]:
    """A copy-add node of two branches over the paper's edge ops, `depth` levels deep."""
    branch = {"edges": _PAPER_EDGES, **({"child": _paper_level(depth - 1)} if depth > 1 else {})}
    return {"split": "copy", "merge": "add", "branches": [branch, dict(branch)]}


# The paper's CIFAR-10 space (its published net, `proxyless_cifar`, is in it): the PyramidNet of 3 x 18
# blocks, alpha 84, bottleneck 4; the cell's root edge is the fixed grouped conv with shuffle that widens ×2,
# its channels split in two halves with a BN'd skip each, each half a three-level copy-add tree over the
# separable convs, pooling and identity
PROXYLESS_CIFAR_TREE = TreeSpace(
    name="proxyless-cifar-tree",
    backbone=PyramidBackbone(channel_multiple=2),
    cell=CellTemplate.from_dict({"branches": [{"edge": "conv_k3_g2_shuffle", "expand": 2, "child": {
        "split": "split", "merge": "add", "branch_bn": True, "branches": [
            {"edge": "identity", "child": _paper_level(2)}, {"edge": "identity", "child": _paper_level(2)}]}}]}),
)

TREE_PRESETS: dict[str, TreeSpace] = {space.name: space for space in (TREE_TINY, PROXYLESS_CIFAR_TREE)}
