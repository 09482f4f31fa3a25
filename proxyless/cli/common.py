"""Pieces shared by the command modules: the one-line-error parser, run directories, arch sources."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import NoReturn

import torch

from proxyless.arch_kinds import AnyArch, load_any_arch
from proxyless.errors import UserError
from proxyless.infra.atomic import read_json
from proxyless.infra.extras import require
from proxyless.infra.settings import resume_changes
from proxyless.tree.legacy import is_tree_legacy_config, tree_arch_from_legacy
from proxyless.zoo import get_zoo_arch
from proxyless.zoo.legacy import arch_from_legacy, is_legacy_config


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem and pointing at --help."""

    def error(self, message: str) -> NoReturn:
        flag = re.fullmatch(r"argument (--[\w-]+): expected (?:one|at least one) argument", message)
        if flag:  # also `--target-latency -3ms`: argparse takes a value that starts with '-' for a flag
            message += f"; give it a value, written {flag.group(1)}=VALUE when it starts with '-'"
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


class ExamplesFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the hand-written examples in an epilog as they are, and shows defaults."""


def add_command(subparsers, name: str, help: str, examples: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name, help=help, description=help, epilog="examples:\n" + examples, formatter_class=ExamplesFormatter
    )


def read_arch_file(path: str) -> AnyArch:
    """A proxyless arch.json (MBConv or tree-cell), or a network config in the original ProxylessNAS format
    (`ProxylessNASNets` or `PyramidTreeNet`)."""
    file = Path(path)
    if file.is_file() and file.suffix.lower() == ".json":
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None  # load_any_arch reports it
        name = file.stem.removesuffix(".config")
        if is_legacy_config(data):
            return arch_from_legacy(data, name=name)
        if is_tree_legacy_config(data):
            return tree_arch_from_legacy(data, name=name)
    return load_any_arch(path)


def resolve_net(arch_path: str | None, zoo_name: str | None) -> tuple[AnyArch, bool]:
    """The architecture of either kind named by --arch or --zoo; the flag tells whether it may be adapted
    to the data."""
    if (arch_path is None) == (zoo_name is None):
        raise UserError("give exactly one of --arch ARCH.json or --zoo NAME (see `proxyless zoo list`)")
    if zoo_name is not None:
        return get_zoo_arch(zoo_name), True
    return read_arch_file(arch_path), False


def add_data_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """--data, --image-size, --workers, --device; returns the group for a command's own data flags."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", default="sample",
                       help="'sample' (embedded CIFAR-10 sample), a cifar-10-batches-py dir, "
                            "'cifar10:DIR' (download into DIR), or an ImageFolder dir")
    group.add_argument("--image-size", type=int, help="input size for ImageFolder data (default: the net's)")
    group.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    group.add_argument("--threads", type=int, default=0,
                       help="torch threads of this process (0: torch's default, one per core); beside other busy "
                            "processes give fewer (jobs sharing their cores with other work ran 5-10x slower)")
    return group


def use_threads(args: argparse.Namespace) -> None:
    """Run this process's torch ops on `--threads` threads (0: leave torch's default)."""
    if args.threads < 0:
        raise UserError(f"--threads must be 0 (torch's default) or more, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)


def add_run_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """--out, --resume RUN_DIR, --overwrite and the other flags of a resumable run (`search`, `train`)."""
    group = parser.add_argument_group("run directory")
    group.add_argument("--out", help=f"run directory (default: runs/{command}-<name>, numbered if taken)")
    group.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the run in RUN_DIR with its saved settings (a flag given again must match, "
                            "except --epochs (more), --checkpoint-every, --workers, --no-progress, --tensorboard)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    group.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                       help="also checkpoint every STEPS steps inside an epoch (0: end of epoch only)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")
    group.add_argument("--tensorboard", action="store_true",
                       help="also log the per-epoch metrics as TensorBoard scalars in the run directory")


def check_extras(args: argparse.Namespace) -> None:
    """Stop before any work when a flag needs an optional package that is missing (one line, its install)."""
    if getattr(args, "tensorboard", False):
        require("tensorboard", "tensorboard", "TensorBoard logging")


def resumed_args(args: argparse.Namespace, command: str, before: dict | None = None) -> argparse.Namespace:
    """The flags the run in `args.resume` was started with, and the flags given now that may change on a
    resume (`proxyless.infra.settings`); a flag given now with another value is refused in one line.
    `before`: the values of flags added since, for a run saved without them (else they take the defaults)."""
    if args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    path = Path(args.resume) / "config.json"
    if not path.is_file():
        raise UserError(f"--resume {args.resume}: no config.json there; is it a `proxyless {command}` run directory?")
    saved = read_json(path, UserError, f"{command} run's saved settings")
    if not isinstance(saved, dict) or not isinstance(saved.get("command"), dict):
        raise UserError(f"{path}: no saved command-line settings; resume it from Python with the settings it was "
                        f"started with, or start a new run")
    flags = saved["command"]
    given = {dest: getattr(args, dest) for dest in getattr(args, "given", ()) if dest not in ("resume", "quiet")}
    changed = resume_changes(flags, given, args.resume)
    # flags added since the run started: what such runs did (`before`), else the defaults
    return argparse.Namespace(**{**vars(args), **(before or {}), **flags,
                                 **{k: new for k, (_, new) in changed.items()}, "resume": args.resume})


def command_of(args: argparse.Namespace) -> dict:
    """The flags a run is started with, saved in its config.json so that `--resume RUN_DIR` can replay them."""
    skip = {"handler", "resume_hint", "command", "given", "resume", "overwrite", "quiet"}
    return {key: value for key, value in vars(args).items() if key not in skip}


def given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the options written on the command line `argv` (not left at their defaults)."""
    unset = object()
    namespace = argparse.Namespace(**{action.dest: unset for action in parser._actions})
    parser.parse_known_args(argv, namespace)  # argparse skips the defaults of what the namespace holds
    return {action.dest for action in parser._actions if getattr(namespace, action.dest, unset) is not unset}
