"""Import and export the original authors' tree-cell network format (`PyramidTreeNet`).

The published CIFAR-10 network (``proxyless_cifar.config.json``) looks like:

    {"name": "PyramidTreeNet",
     "blocks": [{"name": "TransitionBlock", "layers": [ConvLayer 3x3 (no BN), IdentityLayer (BN)]},
                {"name": "ResidualTreeBlock", "in_bottle": ConvLayer 1x1, "out_bottle": ConvLayer 1x1,
                 "shortcut": IdentityLayer | PoolingLayer 2x2, "final_bn": true, "cell_drop_rate": 0.0,
                 "cell": {"name": "TreeNode", "split_type": null | "copy" | "split",
                          "merge_type": null | "add" | "concat", "has_branch_bn": false,
                          "edges": [ConvLayer | DepthConvLayer | PoolingLayer | IdentityLayer, ...],
                          "child_nodes": [TreeNode | null, ...], ...}}, ...,
                {"name": "TransitionBlock", "layers": [PoolingLayer avg over the whole map (BN, ReLU)]}],
     "classifier": {"name": "LinearLayer", "in_features": 400, "out_features": 10, ...}}

Every layer there runs in the order "bn_act_weight": BN (of its input), activation, then the weights.

`tree_arch_from_legacy` reads such a dict into a `TreeArch`, and refuses it unless `legacy_from_tree_arch`
writes exactly the same dict back: whatever the file says that the `TreeArch` cannot (a width off the
PyramidNet rule, a post-activated conv, a drop rate), the error names the first such field.
"""

from __future__ import annotations

from typing import Any

from proxyless.arch import ArchError
from proxyless.errors import UserError
from proxyless.tree.arch import BlockShape, Branch, PyramidBackbone, TreeArch, TreeNode
from proxyless.tree.ops import EdgeOp

EDGE_LAYERS = {"ConvLayer": "conv", "DepthConvLayer": "sep"}
_MISSING = object()


def is_tree_legacy_config(data: Any) -> bool:
    return isinstance(data, dict) and data.get("name") == "PyramidTreeNet"


def tree_arch_from_legacy(config: dict[str, Any], name: str = "") -> TreeArch:
    """Original-format `PyramidTreeNet` dict -> `TreeArch`; the input size is read off the final pooling."""
    try:
        blocks = config["blocks"]
        residual = [b for b in blocks if b["name"] == "ResidualTreeBlock"]
        backbone = _backbone(blocks[0]["layers"][0]["out_channels"], residual)
        halvings = 2 ** (backbone.stages - 1)
        arch = TreeArch(backbone, tuple(_node(b["cell"], f"block {i} cell") for i, b in enumerate(residual)), name,
                        input_size=blocks[-1]["layers"][0]["kernel_size"] * halvings,
                        num_classes=config["classifier"]["out_features"])
    except UserError:
        raise
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as err:
        raise ArchError(f"not a PyramidTreeNet config: missing or malformed field {err}") from None
    difference = first_difference(legacy_from_tree_arch(arch), config)
    if difference is not None:
        path, ours, theirs = difference
        raise ArchError(f"{path} is {_show(theirs)}, but the PyramidTreeNet read from it would have {_show(ours)}; "
                        "this importer reads PyramidNet widths, pre-activated cell convs and no drop rates")
    return arch


def _backbone(stem: int, residual: list[dict[str, Any]]) -> PyramidBackbone:
    """The PyramidNet whose widths, strides and bottleneck are the blocks' (alpha found by trying)."""
    if not residual:
        raise ArchError("a PyramidTreeNet config needs ResidualTreeBlock blocks")
    widths = [block["in_bottle"]["out_channels"] for block in residual]
    downsampling = [block["shortcut"] for block in residual if block["shortcut"]["name"] == "PoolingLayer"]
    stages = 1 + len(downsampling)
    fixed = dict(stem_channels=stem, blocks_per_stage=len(residual) // stages, stages=stages,
                 bottleneck=residual[0]["out_bottle"]["out_channels"] // widths[0],
                 downsample=downsampling[0]["pool_type"] if downsampling else "avg",
                 final_bn=bool(residual[0]["final_bn"]))
    # 1. every whole alpha near the total widening; 2. the smallest channel multiple that gives these widths
    for alpha in range(max(0, widths[-1] - stem - 8), widths[-1] - stem + 9):
        for multiple in range(1, min(widths) + 1):
            if all(width % multiple == 0 for width in widths):
                backbone = PyramidBackbone(alpha=alpha, channel_multiple=multiple, **fixed)
                if backbone.num_blocks == len(widths) and backbone.widths() == widths:
                    return backbone
    shown = ", ".join(map(str, widths[:8]))
    raise ArchError(f"the blocks' widths ({shown}, ...) follow no PyramidNet widening round({stem} + k·alpha/"
                    f"{len(widths)}) for a whole alpha, with {stages} equal stages; this importer reads PyramidNets")


def _node(node: dict[str, Any], where: str, path: str = "") -> TreeNode:
    if len(node["edges"]) != len(node["child_nodes"]):
        raise ArchError(f"{where}, node {path or 'root'}: {len(node['edges'])} edges but "
                        f"{len(node['child_nodes'])} child_nodes; give one (or null) per edge")
    branches = []
    for i, (edge, child) in enumerate(zip(node["edges"], node["child_nodes"])):
        here = f"{path}.{i}" if path else str(i)
        op = _edge(edge, f"{where}, branch {here}")
        if child is None:
            branches.append(Branch(op))
        else:  # the edge widens to `expand` times what the child maps back to
            expand = max(1, edge["out_channels"] // child["out_channels"])
            branches.append(Branch(op, _node(child, where, here), expand))
    try:
        return TreeNode(tuple(branches), node["split_type"], node["merge_type"], node["has_branch_bn"])
    except ArchError as err:
        raise ArchError(f"{where}, node {path or 'root'}: {err}") from None


def _edge(layer: dict[str, Any], where: str) -> EdgeOp:
    kind = layer["name"]
    try:
        if kind in EDGE_LAYERS:
            return EdgeOp(EDGE_LAYERS[kind], layer["kernel_size"], layer["dilation"], layer["groups"],
                          bool(layer["has_shuffle"]) and layer["groups"] > 1)
        if kind == "PoolingLayer":
            return EdgeOp(layer["pool_type"], layer["kernel_size"])
        if kind == "IdentityLayer":
            return EdgeOp("identity")
    except UserError as err:
        raise ArchError(f"{where}: {err}") from None
    raise ArchError(f"{where}: unsupported edge layer {kind!r}; expected ConvLayer, DepthConvLayer, PoolingLayer "
                    "or IdentityLayer")


# -- export -------------------------------------------------------------------------------------


def legacy_from_tree_arch(arch: TreeArch) -> dict[str, Any]:
    """`arch` in the original format, field for field as the authors' code writes its configs."""
    blocks = arch.blocks()
    final, stem = arch.final_channels, arch.backbone.stem_channels
    final_size = arch.input_size // 2 ** (arch.backbone.stages - 1)
    return {
        "name": "PyramidTreeNet",
        "blocks": [
            {"name": "TransitionBlock", "layers": [_conv(3, stem, 3, use_bn=False), _identity(stem, use_bn=True)]},
            *(_block(shape, cell, arch.backbone) for shape, cell in zip(blocks, arch.cells)),
            {"name": "TransitionBlock",
             "layers": [_pool(final, "avg", final_size, final_size, use_bn=True, act="relu")]},
        ],
        "classifier": {"name": "LinearLayer", "in_features": final, "out_features": arch.num_classes, "bias": True,
                       "use_bn": False, "act_func": None, "dropout_rate": 0, "ops_order": "bn_act_weight"},
    }


def _block(shape: BlockShape, cell: TreeNode, backbone: PyramidBackbone) -> dict[str, Any]:
    in_ch, width = shape.in_channels, shape.width
    shortcut = _identity(in_ch) if shape.stride == 1 else _pool(in_ch, backbone.downsample, 2, shape.stride)
    return {
        "name": "ResidualTreeBlock", "cell_drop_rate": 0.0, "final_bn": backbone.final_bn, "shortcut": shortcut,
        "in_bottle": _conv(in_ch, width, 1), "out_bottle": _conv(width, shape.out_channels, 1, act="relu"),
        "cell": _tree_node(cell, width, width, shape.stride),
    }


def _tree_node(node: TreeNode, in_ch: int, out_ch: int, stride: int) -> dict[str, Any]:
    edges, children = [], []
    for branch, edge_in, out in zip(node.branches, node.in_sizes(in_ch), node.out_sizes(out_ch)):
        edge_out = out * branch.expand if branch.child is not None else out
        edges.append(_edge_layer(branch.edge, edge_in, edge_out, stride))
        children.append(_tree_node(branch.child, edge_out, out, 1) if branch.child is not None else None)
    return {"name": "TreeNode", "in_channels": in_ch, "out_channels": out_ch, "split_type": node.split,
            "merge_type": node.merge, "has_branch_bn": node.branch_bn, "path_drop_rate": 0,
            "edges": edges, "child_nodes": children}


def _edge_layer(op: EdgeOp, in_ch: int, out_ch: int, stride: int) -> dict[str, Any]:
    if op.kind == "identity":
        return _identity(in_ch)
    if op.kind in ("max", "avg"):
        if stride != 1:  # the original pads pooling only at stride 1: a stride-2 pool there is another net
            raise ArchError(f"{op} with stride {stride} has no equivalent in the original format")
        return _pool(in_ch, op.kind, op.kernel, stride)
    name = {kind: layer for layer, kind in EDGE_LAYERS.items()}[op.kind]
    return _conv(in_ch, out_ch, op.kernel, stride, op.dilation, op.groups, op.shuffle, act="relu", name=name)


def _layer(name: str, in_ch: int, out_ch: int, use_bn: bool, act: str | None, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields, "in_channels": in_ch, "out_channels": out_ch, "use_bn": use_bn, "act_func": act,
            "dropout_rate": 0, "ops_order": "bn_act_weight"}


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1,
          shuffle: bool = False, use_bn: bool = True, act: str | None = None,
          name: str = "ConvLayer") -> dict[str, Any]:
    return _layer(name, in_ch, out_ch, use_bn, act, kernel_size=kernel, stride=stride, dilation=dilation,
                  groups=groups, bias=False, has_shuffle=shuffle)


def _pool(channels: int, kind: str, kernel: int, stride: int, use_bn: bool = False,
          act: str | None = None) -> dict[str, Any]:
    return _layer("PoolingLayer", channels, channels, use_bn, act, pool_type=kind, kernel_size=kernel, stride=stride)


def _identity(channels: int, use_bn: bool = False) -> dict[str, Any]:
    return _layer("IdentityLayer", channels, channels, use_bn, None)


# -- comparing two configs ------------------------------------------------------------------------


def first_difference(ours: Any, theirs: Any, path: str = "config") -> tuple[str, Any, Any] | None:
    """(path, our value, their value) of the first field where two JSON values differ, or None.

    >>> first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]})
    ('config.a[1].b', 2, 3)
    """
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in [*theirs, *(k for k in ours if k not in theirs)]:
            found = first_difference(ours.get(key, _MISSING), theirs.get(key, _MISSING), f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(ours, list) and isinstance(theirs, list):
        for i, (a, b) in enumerate(zip(ours, theirs)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None if len(ours) == len(theirs) else (f"{path} (length)", len(ours), len(theirs))
    return None if ours == theirs else (path, ours, theirs)


def _show(value: Any) -> str:
    return "missing" if value is _MISSING else repr(value)
