"""The `proxyless` command line: a thin layer that maps subcommands to library functions.

Each command group lives in its own module with `register(subparsers)`; every handler takes the
parsed arguments and returns an exit code.  User errors print one line and exit with code 2; a run
stopped by Ctrl-C or SIGTERM saves its progress, prints one line and exits with 128 + the signal.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import NoReturn

from proxyless import __version__
from proxyless.cli import evaluate, export, latency, plot, report, search, space, train, zoo
from proxyless.cli.common import OneLineErrorParser, given_flags
from proxyless.errors import UserError
from proxyless.infra.distributed import end_process, launched_by_torchrun
from proxyless.infra.signals import Interrupted

COMMANDS = (search, report, plot, zoo, space, train, evaluate, export, latency)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="proxyless",
        description="Hardware-aware neural architecture search the ProxylessNAS way.",
        epilog="Run `proxyless COMMAND --help` for examples.",
    )
    parser.add_argument("--version", action="version", version=f"proxyless {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print warnings and errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def entry() -> NoReturn:
    """The `proxyless` command and `python -m proxyless`: `main`, then exit with its code. A torchrun
    worker ends without the interpreter's teardown (`end_process`): its process group is left to the
    process's end (`Dist.close(destroy=False)`), since gloo's teardown aborted finished workers now and then."""
    code = main()
    if launched_by_torchrun():
        end_process(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    command = _subparsers(parser).choices[args.command]
    args.given = given_flags(command, argv[argv.index(args.command) + 1:])  # what `--resume` compares
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", force=True)
    with warnings.catch_warnings():  # warnings as one line each, like errors (restored on return)
        warnings.showwarning = lambda message, *_, **__: print(f"proxyless {args.command}: warning: {message}",
                                                                file=sys.stderr)
        return _run(args)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))


def _run(args: argparse.Namespace) -> int:
    """The command's handler; user errors and interruptions become one line and an exit code."""
    try:
        return args.handler(args)
    except UserError as err:
        print(f"proxyless {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stopped:  # a stop signal, after the run saved its progress
        again = getattr(args, "resume_hint", "run the same command again to continue")
        print(f"proxyless {args.command}: interrupted by {stopped.signal_name}; {stopped}; {again}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside a resumable loop: the last save is intact
        print(f"proxyless {args.command}: interrupted", file=sys.stderr)
        return 130
