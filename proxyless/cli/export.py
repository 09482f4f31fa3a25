"""`proxyless export`: a trained network as an ONNX, TorchScript or torch.export file, checked against eager."""

from __future__ import annotations

import argparse
from pathlib import Path

from proxyless.cli.common import add_command, read_arch_file
from proxyless.export import FORMATS, RECORD_NAME, SUFFIXES, ExportResult, export_net, load_trained

EXAMPLES = """\
  proxyless export --arch arch.json --weights runs/train-x/weights.safetensors --format onnx --verify-onnxruntime
  proxyless export --arch arch.json --weights runs/train-x/checkpoint.pt --format torchscript --out model.torchscript.pt
  proxyless export --arch arch.json --weights weights.safetensors --format torch-export   # model.pt2 beside the weights
  proxyless latency measure --exported model.pt2 --batch-size 8                           # then time it
"""


def register(subparsers) -> None:
    parser = add_command(subparsers, "export",
                         "Export a trained network to ONNX, TorchScript or torch.export, checked against eager.",
                         EXAMPLES)
    parser.add_argument("--arch", required=True, help="arch.json of the trained network")
    parser.add_argument("--weights", required=True,
                        help="weights.safetensors, or a `proxyless train` checkpoint.pt (read without running code)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="file format")
    parser.add_argument("--out", help="exported file (default: model.onnx, model.torchscript.pt or model.pt2 "
                        "beside the weights); export.json is written beside it")
    parser.add_argument("--batch-size", type=int, default=2,
                        help="batch of the example it is exported with "
                             "(the batch stays dynamic for onnx and torch-export)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest max-abs difference to the eager model's logits that is accepted")
    parser.add_argument("--verify-onnxruntime", action="store_true",
                        help="onnx: check the file's outputs in onnxruntime "
                             "(other formats are always reloaded and checked)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    arch = read_arch_file(args.arch)
    net = load_trained(arch, args.weights)
    out = Path(args.out) if args.out else Path(args.weights).parent / f"model{SUFFIXES[args.format]}"
    result = export_net(net, args.format, out, args.batch_size, args.tolerance, args.verify_onnxruntime)
    print(f"wrote {out} ({describe(result)}); record in {out.parent / RECORD_NAME}")
    return 0


def describe(result: ExportResult) -> str:
    batch = "dynamic batch" if result.dynamic_batch else f"traced at batch {result.export_batch}"
    shape = f"input 3×{result.input_size}×{result.input_size}, {batch}"
    if result.max_abs_diff is None:
        return f"{result.format}, {shape}; outputs not checked: add --verify-onnxruntime"
    batches = " and ".join(str(b) for b in result.checked_batches)
    return (f"{result.format}, {shape}; max abs diff to eager {result.max_abs_diff:.3g} at batches {batches} "
            f"({result.checked_with}, tolerance {result.tolerance:g})")
