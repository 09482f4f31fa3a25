"""Pieces shared by the command modules: the one-line-error parser, run directories, arch sources."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import NoReturn

from proxyless.arch import Arch, ArchError, load_arch
from proxyless.errors import UserError
from proxyless.zoo import get_zoo_arch
from proxyless.zoo.legacy import arch_from_legacy, is_legacy_config


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem and pointing at --help."""

    def error(self, message: str) -> NoReturn:
        flag = re.fullmatch(r"argument (--[\w-]+): expected one argument", message)
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


def read_arch_file(path: str) -> Arch:
    """A proxyless arch.json, or a network config in the original ProxylessNAS format."""
    file = Path(path)
    if file.is_file() and file.suffix.lower() == ".json":
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None  # load_arch reports it
        if is_legacy_config(data):
            return arch_from_legacy(data, name=file.stem.removesuffix(".config"))
    return load_arch(path)


def resolve_arch(arch_path: str | None, zoo_name: str | None) -> tuple[Arch, bool]:
    """The architecture named by --arch or --zoo; the flag tells whether it may be adapted to the data."""
    if (arch_path is None) == (zoo_name is None):
        raise UserError("give exactly one of --arch ARCH.json or --zoo NAME (see `proxyless zoo list`)")
    if zoo_name is not None:
        return get_zoo_arch(zoo_name), True
    return read_arch_file(arch_path), False


def fit_arch_to_data(arch: Arch, adaptable: bool, image_size: int, num_classes: int) -> Arch:
    """Adapt a zoo arch to the data's image size and classes; refuse a mismatching arch.json."""
    space = arch.space
    if (space.input_size, space.num_classes) == (image_size, num_classes):
        return arch
    if adaptable:
        return arch.with_task(image_size, num_classes)
    raise ArchError(
        f"architecture {arch.name or ''} expects {space.input_size} px images and {space.num_classes} classes, "
        f"but the data has {image_size} px and {num_classes} classes; create a matching one "
        f"(e.g. `proxyless zoo build NAME --image-size {image_size} --num-classes {num_classes} --out arch.json`)"
    )


def prepare_run_dir(out: str | None, default_name: str, resume: bool, overwrite: bool) -> Path:
    """The run directory: refuse to touch an existing one unless --resume or --overwrite says so."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    if out is None:
        if resume:
            raise UserError("--resume needs --out RUN_DIR: the run directory to continue")
        return _fresh_dir(Path("runs") / default_name)
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {out!r} is a file, not a directory; choose another path")
    if path.is_dir() and any(path.iterdir()) and not resume:
        if not overwrite:
            raise UserError(f"output directory {out!r} already exists; pass --resume to continue it or --overwrite to replace it")
        if not (path / "config.json").exists():
            raise UserError(f"refusing to --overwrite {out!r}: it does not look like a proxyless run directory (no config.json)")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fresh_dir(base: Path) -> Path:
    """base, or base-2, base-3, ... whichever does not exist yet."""
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path
