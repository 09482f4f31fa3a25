"""`proxyless space list|show`: the search-space presets and space files."""

from __future__ import annotations

import argparse

from proxyless.arch_kinds import get_any_space
from proxyless.cli.common import add_command
from proxyless.ops import format_op
from proxyless.space import PRESETS
from proxyless.tree.space import TREE_PRESETS, TreeSpace

EXAMPLES = """\
  proxyless space list
  proxyless space show proxyless-cifar
  proxyless space show tree-tiny                    # a tree-cell space: every searched edge of every block
  proxyless space show my_space.yaml
"""


def register(subparsers) -> None:
    parser = add_command(subparsers, "space", "List and inspect search spaces (presets or YAML/JSON files).", EXAMPLES)
    actions = parser.add_subparsers(dest="space_action", metavar="ACTION", required=True, parser_class=type(parser))
    actions.add_parser("list", help="list the presets").set_defaults(handler=run_list)
    show = actions.add_parser("show", help="print a space's searchable layers and their candidates")
    show.add_argument("space", help="preset name or .yaml/.json file")
    show.set_defaults(handler=run_show)


def run_list(args: argparse.Namespace) -> int:
    for name, space in PRESETS.items():
        print(f"{name:<20} {space.input_size} px, {space.num_layers} searchable layers, "
              f"{len(space.candidates)} ops (+zero), width x{space.width_mult:g}")
    for name, tree in TREE_PRESETS.items():
        b = tree.backbone
        print(f"{name:<20} {tree.input_size} px, tree cells: {b.stages} x {b.blocks_per_stage} blocks, "
              f"{len(tree.layers())} searched edges")
    return 0


def run_show(args: argparse.Namespace) -> int:
    space = get_any_space(args.space)
    if isinstance(space, TreeSpace):
        return _show_tree(space)
    print(f"{space.name}: {space.input_size} px input, {space.num_classes} classes, width x{space.width_mult:g}")
    for slot in space.layers():
        ops = " ".join(format_op(op) for op in slot.candidates)
        print(f"{slot.index:>3}  stage {slot.stage}  {slot.input_size:>3}px  "
              f"{slot.in_channels:>4} -> {slot.out_channels:<4} s{slot.stride}  {ops}")
    return 0


def _show_tree(space: TreeSpace) -> int:
    """The backbone, then one line per edge of every block with the candidates that fit there."""
    b = space.backbone
    print(f"{space.name}: {space.input_size} px input, {space.num_classes} classes; PyramidNet of {b.stages} x "
          f"{b.blocks_per_stage} blocks, stem {b.stem_channels}, alpha {b.alpha:g}, bottleneck {b.bottleneck}; "
          f"{len(space.layers())} searched edges")
    for edge in space.edges():
        fixed = "" if len(edge.candidates) > 1 else "  (fixed)"
        print(f"block {edge.block:>3}  edge {edge.path:<8} {edge.input_size:>3}px  {edge.in_channels:>4} -> "
              f"{edge.out_channels:<4} s{edge.stride}  {' '.join(map(str, edge.candidates))}{fixed}")
    return 0
