"""The standalone tree-cell PyramidNet built from a `TreeArch`; it imports nothing from the search code.

    stem        3x3 conv (3 -> stem channels) + BN
    blocks      residual blocks: in_bottle -> cell -> out_bottle -> final BN, plus the shortcut
    head        BN + ReLU + global average pooling
    classifier  linear layer with bias
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from proxyless.net import init_weights
from proxyless.tree.arch import BlockShape, TreeArch, TreeNode


class TreeNodeModule(nn.Module):
    """A node of a cell: split the input over the branches, run edge then child on each, merge."""

    def __init__(self, node: TreeNode, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.split, self.merge = node.split, node.merge
        self.in_sizes = node.in_sizes(in_ch)
        edges, nodes, bns = [], [], []
        for branch, edge_in, out in zip(node.branches, self.in_sizes, node.out_sizes(out_ch)):
            edge_out = out * branch.expand if branch.child is not None else out
            edges.append(branch.edge.build(edge_in, edge_out, stride))
            nodes.append(TreeNodeModule(branch.child, edge_out, out, 1) if branch.child else nn.Identity())
            bns.append(nn.BatchNorm2d(out) if node.branch_bn else nn.Identity())
        self.edges, self.nodes, self.branch_bns = nn.ModuleList(edges), nn.ModuleList(nodes), nn.ModuleList(bns)
        self.branch_bn = node.branch_bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = x.split(self.in_sizes, dim=1) if self.split == "split" else [x] * len(self.edges)
        outputs = []
        for x_i, edge, child, bn in zip(inputs, self.edges, self.nodes, self.branch_bns):
            e = edge(x_i)  # (B, edge_out, H/s, W/s)
            y = child(e)  # (B, out_i, H/s, W/s)
            outputs.append(bn(y) + e if self.branch_bn else y)
        if self.merge == "concat":
            return torch.cat(outputs, dim=1)
        return sum(outputs[1:], outputs[0])


class TreeBlock(nn.Module):
    """shortcut(x), zero-padded to the output channels, + final_bn(out_bottle(cell(in_bottle(x)))).

    `cell` is the block's cell module: a `TreeNodeModule`, the search's cell of mixed ops (which takes the
    plan's choices as well: `forward` hands them on), or `nn.Identity` for the block's frame alone."""

    def __init__(self, shape: BlockShape, cell: nn.Module, downsample: str, final_bn: bool) -> None:
        super().__init__()
        self.extra_channels = shape.out_channels - shape.in_channels
        if shape.stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        elif downsample == "avg":
            self.shortcut = nn.AvgPool2d(2, shape.stride)
        else:
            self.shortcut = nn.MaxPool2d(2, shape.stride)
        self.in_bottle = nn.Sequential(OrderedDict(
            bn=nn.BatchNorm2d(shape.in_channels), conv=nn.Conv2d(shape.in_channels, shape.width, 1, bias=False)))
        self.cell = cell
        self.out_bottle = nn.Sequential(OrderedDict(
            bn=nn.BatchNorm2d(shape.width), act=nn.ReLU(),
            conv=nn.Conv2d(shape.width, shape.out_channels, 1, bias=False)))
        self.final_bn = nn.BatchNorm2d(shape.out_channels) if final_bn else nn.Identity()

    def forward(self, x: torch.Tensor, *cell_args) -> torch.Tensor:
        shortcut = F.pad(self.shortcut(x), (0, 0, 0, 0, 0, self.extra_channels))  # (B, out, H/s, W/s)
        return shortcut + self.final_bn(self.out_bottle(self.cell(self.in_bottle(x), *cell_args)))


def make_tree_stem(channels: int) -> nn.Module:
    """3x3 conv (3 -> channels) + BN."""
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, channels, 3, padding=1, bias=False),
                                     bn=nn.BatchNorm2d(channels)))


def make_tree_head(channels: int) -> nn.Module:
    """BN + ReLU + global average pooling: (B, channels, H, W) -> (B, channels)."""
    return nn.Sequential(OrderedDict(
        bn=nn.BatchNorm2d(channels), act=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten()))


class TreeNet(nn.Module):
    """stem -> residual tree blocks -> BN + ReLU + pool -> classifier."""

    def __init__(self, arch: TreeArch) -> None:
        super().__init__()
        self.arch = arch
        self.stem = make_tree_stem(arch.backbone.stem_channels)
        self.blocks = nn.Sequential(*(
            TreeBlock(shape, TreeNodeModule(cell, shape.width, shape.width, shape.stride), arch.backbone.downsample,
                      arch.backbone.final_bn)
            for shape, cell in zip(arch.blocks(), arch.cells)))
        self.head = make_tree_head(arch.final_channels)
        self.classifier = nn.Linear(arch.final_channels, arch.num_classes)
        init_weights(self)  # the same init as the MBConv nets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))  # (B, final, H/4, W/4) for three stages
        return self.classifier(self.head(x))  # (B, classes)

