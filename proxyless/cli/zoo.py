"""`proxyless zoo list|show|build|import`: the baseline and published networks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from proxyless.arch import save_arch
from proxyless.arch_kinds import AnyArch
from proxyless.cli.common import add_command, read_arch_file
from proxyless.errors import UserError, check_positive_flags
from proxyless.net import build_net
from proxyless.profile import profile
from proxyless.tree.arch import TreeArch
from proxyless.tree.legacy import is_tree_legacy_config, tree_arch_from_legacy
from proxyless.zoo import get_zoo_arch, list_zoo
from proxyless.zoo.legacy import arch_from_legacy, is_legacy_config

EXAMPLES = """\
  proxyless zoo list
  proxyless zoo show proxyless_mobile
  proxyless zoo show proxyless_cifar                      # the paper's CIFAR-10 net: a tree-cell PyramidNet
  proxyless zoo build mobilenetv2_0.35 --image-size 32 --num-classes 10 --out mbv2.json
  proxyless zoo import proxyless_cpu.config.json --out proxyless_cpu.json
  proxyless zoo import proxyless_cifar.config.json --out proxyless_cifar.json
"""


def register(subparsers) -> None:
    parser = add_command(subparsers, "zoo", "List, inspect and export the model zoo (MobileNetV2, ProxylessNAS).",
                         EXAMPLES)
    actions = parser.add_subparsers(dest="zoo_action", metavar="ACTION", required=True, parser_class=type(parser))
    actions.add_parser("list", help="list the zoo's networks").set_defaults(handler=run_list)
    show = actions.add_parser("show", help="print a network's layers, params and MACs")
    show.add_argument("name", help="zoo name (see `proxyless zoo list`) or an arch.json")
    _add_task_flags(show)
    show.set_defaults(handler=run_show)
    build = actions.add_parser("build", help="build a network, print params and MACs, and write its arch.json")
    build.add_argument("name", help="zoo name (see `proxyless zoo list`)")
    build.add_argument("--out", help="write the arch.json here")
    _add_task_flags(build)
    build.set_defaults(handler=run_build)
    imp = actions.add_parser("import", help="convert an original ProxylessNAS *.config.json to an arch.json")
    imp.add_argument("config", help="network config in the original ProxylessNAS JSON format")
    imp.add_argument("--name", help="name of the architecture (default: the file name)")
    imp.add_argument("--image-size", type=int,
                     help="image size the net was designed for (default: 224 for ProxylessNASNets; a PyramidTreeNet "
                          "says its own)")
    imp.add_argument("--out", required=True, help="where to write the arch.json")
    imp.set_defaults(handler=run_import)


def _add_task_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-size", type=int, help="adapt the net to this image size (e.g. 32 for CIFAR)")
    parser.add_argument("--num-classes", type=int, help="adapt the classifier to this many classes")


def _arch_for(args: argparse.Namespace) -> AnyArch:
    arch = read_arch_file(args.name) if args.name.endswith(".json") else get_zoo_arch(args.name)
    if args.image_size is not None or args.num_classes is not None:
        check_positive_flags(args, "image_size", "num_classes")
        arch = arch.with_task(args.image_size or arch.input_size, args.num_classes or arch.num_classes)
    return arch


def run_list(args: argparse.Namespace) -> int:
    for entry in list_zoo():
        print(f"{entry.name:<22} {entry.description}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    arch = _arch_for(args)
    print(f"{arch.label}: {arch.input_size} px, {arch.num_classes} classes, {_layout(arch)}")
    print(arch.summary())
    print(profile(build_net(arch), arch.input_size))
    return 0


def _layout(arch: AnyArch) -> str:
    """The fixed parts of the network, in a few words."""
    if isinstance(arch, TreeArch):
        b = arch.backbone
        return (f"tree-cell PyramidNet: stem {b.stem_channels}, {b.stages} stages of {b.blocks_per_stage} blocks, "
                f"alpha {b.alpha:g}, bottleneck {b.bottleneck}, {arch.final_channels} channels at the head")
    space = arch.space
    return (f"stem {space.stem_out} s{space.stem_stride}, "
            f"first block {space.first_block_out if space.has_first_block else 'none'}, "
            f"feature mix {space.feature_mix_out}")


def run_build(args: argparse.Namespace) -> int:
    arch = _arch_for(args)
    print(f"{arch.label}: {profile(build_net(arch), arch.input_size)} at {arch.input_size} px")
    if args.out:
        save_arch(arch, args.out)
        print(f"wrote {args.out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    path = Path(args.config)
    if not path.is_file():
        raise UserError(f"config file {args.config!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{args.config}: not valid JSON ({err})") from None
    name = args.name or path.name.removesuffix(".json").removesuffix(".config")
    check_positive_flags(args, "image_size")
    if is_tree_legacy_config(data):
        arch = tree_arch_from_legacy(data, name=name)
        arch = arch.with_task(args.image_size or arch.input_size, arch.num_classes)
    elif is_legacy_config(data):
        arch = arch_from_legacy(data, name=name, input_size=args.image_size or 224)
    else:
        raise UserError(f"{args.config}: not a ProxylessNAS network config (needs 'first_conv' and 'blocks', or "
                        "the name 'PyramidTreeNet')")
    save_arch(arch, args.out)
    print(f"{name}: {profile(build_net(arch), arch.input_size)}; wrote {args.out}")
    return 0
