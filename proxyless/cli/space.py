"""`proxyless space list|show`: the search-space presets and space files."""

from __future__ import annotations

import argparse

from proxyless.cli.common import add_command
from proxyless.ops import format_op
from proxyless.space import PRESETS, get_space

EXAMPLES = """\
  proxyless space list
  proxyless space show proxyless-cifar
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
    return 0


def run_show(args: argparse.Namespace) -> int:
    space = get_space(args.space)
    print(f"{space.name}: {space.input_size} px input, {space.num_classes} classes, width x{space.width_mult:g}")
    for slot in space.layers():
        ops = " ".join(format_op(op) for op in slot.candidates)
        print(f"{slot.index:>3}  stage {slot.stage}  {slot.input_size:>3}px  "
              f"{slot.in_channels:>4} -> {slot.out_channels:<4} s{slot.stride}  {ops}")
    return 0
