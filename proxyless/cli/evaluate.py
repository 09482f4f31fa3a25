"""`proxyless eval`: evaluate a trained network on a test split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from proxyless.arch_kinds import AnyArch, any_arch_from_dict
from proxyless.cli.common import add_command, add_data_flags, read_arch_file, use_threads
from proxyless.data import load_splits
from proxyless.errors import UserError, check_positive_flags
from proxyless.infra.checkpoint import load_checkpoint, load_state, load_weights
from proxyless.infra.device import resolve_device
from proxyless.net import build_net
from proxyless.profile import profile
from proxyless.train import evaluate

EXAMPLES = """\
  proxyless eval runs/train-mobilenetv2_0.35                      # a run directory
  proxyless eval runs/train-mobilenetv2_0.35/checkpoint.pt --json
  proxyless eval --arch arch.json --weights weights.safetensors --data ~/cifar-10-batches-py
"""


def register(subparsers) -> None:
    parser = add_command(subparsers, "eval", "Evaluate a trained network: top-1/top-5, loss, params, MACs.", EXAMPLES)
    parser.add_argument("run", nargs="?", help="run directory or checkpoint.pt")
    parser.add_argument("--arch", help="arch.json (with --weights)")
    parser.add_argument("--weights", help="weights.safetensors (with --arch)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_data_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    arch, net = _load_trained(args)
    check_positive_flags(args, "batch_size")
    use_threads(args)
    device = resolve_device(args.device)
    splits = load_splits(args.data, arch.input_size, augment=False, progress=False)
    if len(splits.classes) != arch.num_classes:
        raise UserError(f"the network has {arch.num_classes} classes "
                        f"but {splits.source} has {len(splits.classes)}")
    result = evaluate(net.to(device), splits.test, args.batch_size, device, progress=False)
    result.update(vars(profile(net, arch.input_size)))
    if args.json:
        print(json.dumps({"arch": arch.name, "data": splits.source, **result}))
    else:
        print(f"{arch.name}: top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  loss {result['loss']:.4f}  "
              f"params {result['params']:,}  MACs {result['macs']:,}  ({len(splits.test)} images of {splits.source})")
    return 0


def _load_trained(args: argparse.Namespace) -> tuple[AnyArch, object]:
    """(arch, net with weights) from a run dir, a checkpoint, or --arch + --weights."""
    if args.run is None:
        if not (args.arch and args.weights):
            raise UserError("give a run directory / checkpoint.pt, or both --arch and --weights")
        arch = read_arch_file(args.arch)
        net = build_net(arch)
        load_weights(net, args.weights)
        return arch, net
    path = Path(args.run)
    if path.is_dir():
        if not (path / "checkpoint.pt").exists():
            raise UserError(f"{args.run}: no checkpoint.pt in this directory; is it a `proxyless train` run?")
        path = path / "checkpoint.pt"
    state = load_checkpoint(path)
    arch = any_arch_from_dict(state["arch"], where=str(path))
    net = build_net(arch)
    load_state(net, state["model"], str(path))
    return arch, net
