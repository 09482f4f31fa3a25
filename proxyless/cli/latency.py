"""`proxyless lut build|show|validate` and `proxyless latency predict|measure`: latency on the target device."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from proxyless.arch import Arch
from proxyless.arch_kinds import AnyArch, get_any_space
from proxyless.cli.common import add_command, resolve_net
from proxyless.errors import UserError
from proxyless.export import format_of, read_exported, recorded_input_size
from proxyless.infra.atomic import atomic_write_text
from proxyless.infra.extras import require
from proxyless.latency.context import METHODS
from proxyless.latency.keys import arch_keys
from proxyless.latency.lut import load_lut
from proxyless.latency.measure import BACKENDS, MeasureConfig, build_lut, measure_archs, trimmed_stat
from proxyless.latency.predict import predict_latency
from proxyless.latency.runners import loaded_timer, onnx_timer, steady_memory
from proxyless.latency.validate import NETWORK_MEASURE, plot_scatter, save_calibration, validate_lut

EXAMPLES = """\
  proxyless lut build --space proxyless-cifar --batch-size 32 --out lut_cifar.json
  proxyless lut build --space proxyless-cifar --out lut_cifar.json --calibrate 20   # ... and calibrate it
  proxyless lut build --space proxyless-imagenet --threads 2 --out lut_224.json   # resumes if interrupted
  proxyless lut show --lut lut_cifar.json
  proxyless latency predict --zoo proxyless_mobile --lut mobile_trim.yaml         # the Pixel 1 table
  proxyless latency predict --arch runs/search/arch.json --lut lut_cifar.json
  proxyless lut validate --lut lut_cifar.json --samples 50 --calibrate 20 --out lut_cifar_validation
  proxyless latency measure --arch runs/search/arch.json --backend onnxruntime --batch-size 32
  proxyless latency measure --onnx model.onnx --image-size 32 --batch-size 32
  proxyless latency measure --exported model.pt2 --batch-size 32   # .onnx, .pt2 or TorchScript from `proxyless export`
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
    build.add_argument("--method", choices=METHODS, default="auto",
                       help="time each op in context, inside whole networks (torch-cpu and onnxruntime, MBConv "
                            "spaces), or alone; "
                            "auto: in context where it can (default)")
    build.add_argument("--calibrate", type=int, default=0, metavar="N",
                       help="then calibrate the table on N random whole networks, timed here, and report its error "
                            "on --validate others (as `lut validate` does; 0: do not)")
    build.add_argument("--validate", type=int, default=10, metavar="M",
                       help="with --calibrate: random networks to report the calibrated table's error on")
    build.add_argument("--no-progress", action="store_true")
    build.set_defaults(handler=run_build)
    show = actions.add_parser("show", help="print a table's header and a summary of its entries")
    show.add_argument("--lut", required=True, help="latency table (.json, or the original mobile .yaml)")
    show.set_defaults(handler=run_show)
    validate = actions.add_parser(
        "validate", help="calibrate a table on random whole networks and report its error on others")
    validate.add_argument("--lut", required=True, help="a JSON table from `lut build` (its calibration is updated)")
    validate.add_argument("--space", help="default: the preset named in the table's header")
    validate.add_argument("--samples", type=int, default=50, help="random networks to validate on")
    validate.add_argument("--calibrate", type=int, default=20,
                          help="other random networks to fit the calibration on (0: keep the table's own)")
    validate.add_argument("--seed", type=int, default=0)
    validate.add_argument("--out", required=True, help="directory for validation.json, validation.md, scatter.png")
    validate.add_argument("--no-progress", action="store_true")
    validate.set_defaults(handler=run_validate)

    latency = add_command(subparsers, "latency", "Predict or measure a network's latency.", EXAMPLES)
    actions = latency.add_subparsers(dest="latency_action", metavar="ACTION", required=True, parser_class=type(latency))
    predict = actions.add_parser("predict", help="predicted latency of an arch.json or zoo network")
    predict.add_argument("--arch", help="arch.json")
    predict.add_argument("--zoo", help="zoo model name")
    predict.add_argument("--lut", required=True, help="latency table (.json, or the original mobile .yaml)")
    predict.set_defaults(handler=run_predict)
    measure = actions.add_parser("measure", help="time a whole network (arch.json, zoo name or exported file)")
    measure.add_argument("--arch", help="arch.json")
    measure.add_argument("--zoo", help="zoo model name")
    measure.add_argument("--onnx", help="an exported .onnx file, timed in onnxruntime")
    measure.add_argument("--exported", help="a file from `proxyless export`: .onnx (timed in onnxruntime), "
                         ".pt2 (torch.export) or TorchScript (both in PyTorch on the CPU)")
    measure.add_argument("--backend", default="torch-cpu",
                         help=f"one of: {', '.join(BACKENDS)} (ignored for --onnx/--exported)")
    measure.add_argument("--batch-size", type=int, default=1)
    measure.add_argument("--image-size", type=int,
                         help="image size (default: the architecture's, "
                              "or the one in export.json beside an exported file)")
    measure.add_argument("--threads", type=int, default=0, help="threads (0: torch's default)")
    measure.add_argument("--rounds", type=int, default=10, help="rounds of 5 calls each")
    measure.set_defaults(handler=run_measure)


def run_build(args: argparse.Namespace) -> int:
    space = get_any_space(args.space)
    batch = args.batch_size if args.batch_size is not None else (1 if space.input_size > 64 else 32)
    if batch <= 0 or args.threads < 0:
        raise UserError("--batch-size must be positive and --threads not negative")
    if args.calibrate < 0 or (args.calibrate and args.validate < 3):
        raise UserError("--calibrate must not be negative, and --validate needs at least 3 networks")
    config = MeasureConfig(batch=batch, threads=args.threads)
    table = build_lut(space, args.out, args.backend, config, progress=not args.no_progress, method=args.method)
    where = "in context" if table.header.get("timing") == "context" else "alone"
    print(f"{len(table.entries)} ops of {space.name} measured {where} on {table.header['device']} "
          f"({args.backend}, batch {batch}); wrote {args.out}")
    if not args.calibrate:
        print(f"per-op sums miss what whole networks cost besides their ops: calibrate the table before a search "
              f"with `proxyless lut validate --lut {args.out} --out DIR` (or build with --calibrate 20)")
        return 0
    report = validate_lut(table, space, args.validate, args.calibrate, progress=not args.no_progress)
    save_calibration(table, report, args.out)
    print(report.to_markdown(), end="")
    print(f"calibration saved in {args.out}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    table = load_lut(args.lut)
    for key, value in table.header.items():
        print(f"{key}: {value}")
    kinds = Counter(key.kind for key in table.entries)
    print(f"entries: {len(table.entries)} ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    arch = resolve_net(args.arch, args.zoo)[0]
    table = load_lut(args.lut)
    missing = table.missing(arch_keys(arch, table.context))
    if missing:
        listed = "; ".join(key.describe() for key in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise UserError(f"the table ({table.header.get('backend')}) lacks {len(missing)} of the ops of "
                        f"{arch.name or 'this network'}: {listed}{more}; use a table built for its space "
                        f"({space_of(arch)}, {arch.input_size} px) with `proxyless lut build`")
    print(f"{arch.name or 'network'}: predicted {predict_latency(arch, table):.2f} ms on "
          f"{table.header.get('device', table.header['backend'])} (batch {table.context.batch})")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    table = load_lut(args.lut)
    if args.lut.lower().endswith((".yaml", ".yml")):
        raise UserError("an imported mobile table can only be validated on the phone it was measured on; "
                        "validate tables built here with `proxyless lut build`")
    if args.samples <= 0 or args.calibrate < 0:
        raise UserError("--samples must be positive and --calibrate not negative")
    space = get_any_space(args.space or table.header.get("space", ""))
    require("matplotlib", "plot", "lut validate's scatter plot")  # before minutes of measuring, not after
    report = validate_lut(table, space, args.samples, args.calibrate, args.seed, progress=not args.no_progress)
    out = Path(args.out)
    atomic_write_text(out / "validation.json", json.dumps(report.to_dict(), indent=1) + "\n")
    atomic_write_text(out / "validation.md", report.to_markdown())
    plot_scatter(report, out / "scatter.png")
    if args.calibrate:
        save_calibration(table, report, args.lut)
    print(report.to_markdown(), end="")
    saved = f"; calibration saved in {args.lut}" if args.calibrate else ""
    print(f"wrote {out / 'validation.md'}, {out / 'validation.json'} and {out / 'scatter.png'}{saved}")
    return 0


def run_measure(args: argparse.Namespace) -> int:
    if args.batch_size <= 0 or args.rounds <= 0 or args.threads < 0:
        raise UserError("--batch-size and --rounds must be positive and --threads not negative")
    config = replace(NETWORK_MEASURE, batch=args.batch_size, threads=args.threads,
                     min_rounds=args.rounds, max_rounds=args.rounds)
    if args.onnx is not None or args.exported is not None:
        return _measure_exported(args, config)
    arch, adaptable = resolve_net(args.arch, args.zoo)
    if args.image_size is not None:
        if not adaptable and args.image_size != arch.input_size:
            raise UserError(f"the architecture is for {arch.input_size} px; drop --image-size or use --zoo")
        arch = arch.with_task(args.image_size, arch.num_classes)
    (stat,) = measure_archs([arch], args.backend, config, progress=False)
    print(f"{arch.name or 'network'}: {stat.mean:.2f} ± {stat.var ** 0.5:.2f} ms ({args.backend}, batch "
          f"{args.batch_size}, {stat.count} rounds of {config.calls_per_sample} calls, "
          f"input {arch.input_size} px)")
    return 0


def space_of(arch: AnyArch) -> str:
    """How to name the space a net's table must be built for: an MBConv net's own, or a tree space."""
    return arch.space.name if isinstance(arch, Arch) else "a tree space with its backbone and cells"


def _measure_exported(args: argparse.Namespace, config: MeasureConfig) -> int:
    """Time an exported file: ONNX in onnxruntime, TorchScript and torch.export in PyTorch on the CPU."""
    if args.arch or args.zoo or (args.onnx and args.exported):
        raise UserError("give one of --onnx/--exported FILE, or --arch/--zoo: one network at a time")
    path = args.onnx or args.exported
    fmt = "onnx" if args.onnx else format_of(path)
    if args.exported and not Path(path).is_file():
        raise UserError(f"exported model {path!r} does not exist; write one with `proxyless export`")
    size = args.image_size or recorded_input_size(path)
    if size is None:
        raise UserError(f"--{'onnx' if args.onnx else 'exported'} needs --image-size (the exported model's "
                        f"image size) when no {Path(path).parent / 'export.json'} records it")
    shape = (args.batch_size, 3, size, size)
    if args.threads and fmt != "onnx":
        torch.set_num_threads(args.threads)
    with steady_memory():  # as measure_archs times its nets
        if fmt == "onnx":
            timer, how = onnx_timer(path, shape, args.threads), "onnxruntime"
        else:
            timer, how = loaded_timer(read_exported(path, fmt), shape), f"{fmt}, torch-cpu"
        stat = trimmed_stat([timer(config.calls_per_sample) for _ in range(args.rounds)])  # as measure_archs does
    print(f"{Path(path).name}: {stat.mean:.2f} ± {stat.var ** 0.5:.2f} ms ({how}, batch "
          f"{args.batch_size}, {stat.count} rounds of {config.calls_per_sample} calls, input {size} px)")
    return 0
