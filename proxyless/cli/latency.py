"""`proxyless lut build|show` and `proxyless latency predict`: latency tables for the target device."""

from __future__ import annotations

import argparse
from collections import Counter

from proxyless.cli.common import add_command, read_arch_file
from proxyless.errors import UserError
from proxyless.latency.keys import arch_keys
from proxyless.latency.lut import load_lut
from proxyless.latency.measure import BACKENDS, MeasureConfig, build_lut
from proxyless.latency.predict import predict_latency
from proxyless.space import get_space
from proxyless.zoo import get_zoo_arch

EXAMPLES = """\
  proxyless lut build --space proxyless-cifar --batch-size 32 --out lut_cifar.json
  proxyless lut build --space proxyless-imagenet --threads 2 --out lut_224.json   # resumes if interrupted
  proxyless lut show lut_cifar.json
  proxyless latency predict --zoo proxyless_mobile --lut mobile_trim.yaml         # the Pixel 1 table
  proxyless latency predict --arch runs/search/arch.json --lut lut_cifar.json
"""


def register(subparsers) -> None:
    lut = add_command(subparsers, "lut", "Build and inspect latency lookup tables measured on this device.", EXAMPLES)
    actions = lut.add_subparsers(dest="lut_action", metavar="ACTION", required=True, parser_class=type(lut))
    build = actions.add_parser("build", help="measure every op of a space on a backend (resumable)")
    build.add_argument("--space", default="proxyless-cifar", help="preset name or .yaml/.json space file")
    build.add_argument("--backend", default="torch-cpu", help=f"one of: {', '.join(BACKENDS)}")
    build.add_argument("--batch-size", type=int, help="default: 1 for spaces above 64 px, 32 for small ones")
    build.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    build.add_argument("--out", required=True, help="the table (JSON); an existing partial table is resumed")
    build.add_argument("--no-progress", action="store_true")
    build.set_defaults(handler=run_build)
    show = actions.add_parser("show", help="print a table's header and a summary of its entries")
    show.add_argument("lut", help="latency table (.json, or the original mobile .yaml)")
    show.set_defaults(handler=run_show)

    latency = add_command(subparsers, "latency", "Predict a network's latency from a latency table.", EXAMPLES)
    actions = latency.add_subparsers(dest="latency_action", metavar="ACTION", required=True, parser_class=type(latency))
    predict = actions.add_parser("predict", help="predicted latency of an arch.json or zoo network")
    predict.add_argument("--arch", help="arch.json")
    predict.add_argument("--zoo", help="zoo model name")
    predict.add_argument("--lut", required=True, help="latency table (.json, or the original mobile .yaml)")
    predict.set_defaults(handler=run_predict)


def run_build(args: argparse.Namespace) -> int:
    space = get_space(args.space)
    batch = args.batch_size if args.batch_size is not None else (1 if space.input_size > 64 else 32)
    if batch <= 0 or args.threads < 0:
        raise UserError("--batch-size must be positive and --threads not negative")
    config = MeasureConfig(batch=batch, threads=args.threads)
    table = build_lut(space, args.out, args.backend, config, progress=not args.no_progress)
    print(f"{len(table.entries)} ops of {space.name} measured on {table.header['device']} "
          f"({args.backend}, batch {batch}); wrote {args.out}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    table = load_lut(args.lut)
    for key, value in table.header.items():
        print(f"{key}: {value}")
    kinds = Counter(key.kind for key in table.entries)
    print(f"entries: {len(table.entries)} ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    if (args.arch is None) == (args.zoo is None):
        raise UserError("give exactly one of --arch ARCH.json or --zoo NAME")
    arch = read_arch_file(args.arch) if args.arch else get_zoo_arch(args.zoo)
    table = load_lut(args.lut)
    missing = table.missing(arch_keys(arch, table.context))
    if missing:
        listed = "; ".join(key.describe() for key in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise UserError(f"the table ({table.header.get('backend')}) lacks {len(missing)} of the ops of "
                        f"{arch.name or 'this network'}: {listed}{more}")
    print(f"{arch.name or 'network'}: predicted {predict_latency(arch, table):.2f} ms on "
          f"{table.header.get('device', table.header['backend'])} (batch {table.context.batch})")
    return 0
