"""The supernet of a tree-cell space: the PyramidNet backbone with a mixed op on every searched edge.

It is the tree counterpart of `proxyless.search.supernet.SuperNet` and serves the same search code (the
loop, both strategies, the latency objective, the derive rules): `forward(x, plan)` takes one plan entry
per searched edge, in the order of `TreeSpace.layers()` (block by block, each cell depth first), and each
entry runs its edge's `MixedOp` as one path, two binary-gated paths or all of them. An edge with one
candidate at its place is a plain module and takes no plan entry.

The `MixedOp` is the MBConv layers' own: an `EdgeLayer` builds its candidates through the same
`build(op)` call, so the binarized two-path gate and its BinaryConnect gradient are the same code. The
candidates of an edge have independent weights (entangled weights are an MBConv idea: slices of one
kernel); blocks share nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from proxyless.net import init_weights
from proxyless.search.mixed_op import MixedOp
from proxyless.search.supernet import Choice, Plan, SupernetBase, run_choice
from proxyless.tree.arch import TreeArch, TreeNode
from proxyless.tree.net import TreeBlock, TreeNet, TreeNodeModule, make_tree_head, make_tree_stem
from proxyless.tree.space import EdgeLayer, TreeSpace


class SuperBranch(nn.Module):
    """A branch of a cell: its edge (a `MixedOp` where searched), then its child node, if any."""

    def __init__(self, edge: nn.Module, child: SuperNode | None, bn: nn.Module | None) -> None:
        super().__init__()
        self.edge, self.child, self.bn = edge, child, bn  # registered in this order: plan order is depth first

    def forward(self, x: torch.Tensor, choices: Iterator[Choice]) -> torch.Tensor:
        e = run_choice(self.edge, x, next(choices)) if isinstance(self.edge, MixedOp) else self.edge(x)
        y = self.child(e, choices) if self.child is not None else e
        return self.bn(y) + e if self.bn is not None else y


class SuperNode(nn.Module):
    """A node of a cell, as `TreeNodeModule` runs it, with the branches' edges taken from `edges`."""

    def __init__(self, node: TreeNode, edges: Iterator[EdgeLayer], in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.split, self.merge, self.in_sizes = node.split, node.merge, node.in_sizes(in_ch)
        branches = []
        for branch, out in zip(node.branches, node.out_sizes(out_ch)):
            layer = next(edges)  # this branch's edge, then (inside the child) the child's edges
            edge = MixedOp(layer) if len(layer.candidates) > 1 else layer.build(layer.candidates[0])
            child = SuperNode(branch.child, edges, layer.out_channels, out) if branch.child else None
            branches.append(SuperBranch(edge, child, nn.BatchNorm2d(out) if node.branch_bn else None))
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor, choices: Iterator[Choice]) -> torch.Tensor:
        inputs = x.split(self.in_sizes, dim=1) if self.split == "split" else [x] * len(self.branches)
        outputs = [branch(x_i, choices) for x_i, branch in zip(inputs, self.branches)]  # (B, out_i, H/s, W/s)
        if self.merge == "concat":
            return torch.cat(outputs, dim=1)
        return sum(outputs[1:], outputs[0])


class TreeSuperNet(SupernetBase):
    """stem -> residual blocks whose cells hold mixed ops -> head -> classifier, for a `TreeSpace`."""

    def __init__(self, space: TreeSpace) -> None:
        super().__init__()
        self.space = space
        self.entangled = False  # what a search checkpoint records about the weights
        backbone, edges = space.backbone, iter(space.edges())
        shape = space.arch_of([0] * len(space.layers()))  # the cells' structure; the edges come from `edges`
        self.stem = make_tree_stem(backbone.stem_channels)
        self.blocks = nn.ModuleList(
            TreeBlock(block, SuperNode(cell, edges, block.width, block.width), backbone.downsample, backbone.final_bn)
            for block, cell in zip(shape.blocks(), shape.cells))
        self.head = make_tree_head(shape.final_channels)
        self.classifier = nn.Linear(shape.final_channels, space.num_classes)
        init_weights(self)
        self.num_layers = len(self.mixed_ops())

    def forward(self, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        assert len(plan) == self.num_layers, (len(plan), self.num_layers)
        choices = iter(plan)
        x = self.stem(x)  # (B, stem, H, W)
        for block in self.blocks:
            x = block(x, choices)
        return self.classifier(self.head(x))  # (B, classes)

    def arch_of(self, indices: Sequence[int], name: str = "") -> TreeArch:
        """The tree-cell net that a single-path plan selects."""
        return self.space.arch_of(indices, name)


def inherit_tree_weights(supernet: TreeSuperNet, net: TreeNet) -> None:
    """Copy the supernet's weights of `net`'s paths into `net` (a net of the supernet's space): stem, each
    block's frame, every edge's kept candidate, the branch BNs, head and classifier."""
    for name in ("stem", "head", "classifier"):
        getattr(net, name).load_state_dict(getattr(supernet, name).state_dict())
    indices = iter(supernet.space.indices_of(net.arch))
    for block, kept in zip(supernet.blocks, net.blocks):
        for name in ("in_bottle", "out_bottle", "final_bn"):
            getattr(kept, name).load_state_dict(getattr(block, name).state_dict())
        _inherit_node(block.cell, kept.cell, indices)


def _inherit_node(node: SuperNode, kept: TreeNodeModule, indices: Iterator[int]) -> None:
    """Depth first, as the plan is: each branch's edge, then its child node."""
    for branch, edge, child, bn in zip(node.branches, kept.edges, kept.nodes, kept.branch_bns):
        source = branch.edge.standalone(next(indices)) if isinstance(branch.edge, MixedOp) else branch.edge
        edge.load_state_dict(source.state_dict())
        if branch.child is not None:
            _inherit_node(branch.child, child, indices)
        if branch.bn is not None:
            bn.load_state_dict(branch.bn.state_dict())
