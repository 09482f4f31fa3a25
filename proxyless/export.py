"""A trained network as a deployable file (ONNX, TorchScript, torch.export), checked against eager.

    net = load_trained(arch, "runs/x/weights.safetensors")      # or the run's checkpoint.pt
    result = export_net(net, "onnx", "model.onnx", verify_onnxruntime=True)
    result.max_abs_diff  # largest |exported - eager| over two random batches of different sizes

Formats (the file suffix tells them apart again, see `format_of`):
    onnx          .onnx            torch's dynamo exporter, the one the onnxruntime latency backend uses
    torchscript   .torchscript.pt  torch.jit.trace in eval mode, saved with torch.jit.save (torch marks
                                   TorchScript deprecated in favour of torch.export; it is kept for
                                   runtimes that only read TorchScript, and its warnings are silenced)
    torch-export  .pt2             torch.export.export, saved with torch.export.save

ONNX and torch.export files keep the batch dimension dynamic; a traced conv net runs at any batch
too. The parity check therefore runs at the example's batch size and at another one.

The file is built in memory, reloaded from exactly those bytes and compared with the eager model,
and only written (atomically) when it is within the tolerance: a failed export leaves any earlier
file as it was. A record of each export goes to `export.json` beside the file.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from proxyless.arch_kinds import AnyArch
from proxyless.errors import UserError
from proxyless.infra.atomic import atomic_write, atomic_write_text
from proxyless.infra.checkpoint import load_checkpoint, load_state, load_weights
from proxyless.infra.extras import require
from proxyless.latency.runners import export_onnx, onnxruntime_session
from proxyless.net import ProxylessNet, build_net
from proxyless.tree.net import TreeNet

FORMATS = ("onnx", "torchscript", "torch-export")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "torch-export": ".pt2"}
RECORD_NAME = "export.json"
RECORD_FORMAT = "proxyless-export/1"

Forward = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) -> (B, classes)


class ExportError(UserError):
    """An exported file is unusable: its outputs differ from the eager model's, or it cannot be read."""


@dataclass(frozen=True)
class ExportResult:
    format: str
    file: str
    input_size: int
    export_batch: int  # the example the model was traced or exported with
    checked_batches: tuple[int, ...]
    max_abs_diff: float | None  # None: not checked (ONNX without --verify-onnxruntime)
    tolerance: float
    checked_with: str | None  # what ran the reloaded file
    dynamic_batch: bool
    torch: str

    def to_dict(self) -> dict:
        return {**asdict(self), "checked_batches": list(self.checked_batches)}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def format_of(path: str | Path) -> str:
    """The format of an exported file by its suffix: .onnx, .pt2 (torch.export), else TorchScript."""
    suffix = Path(path).suffix.lower()
    return {".onnx": "onnx", ".pt2": "torch-export"}.get(suffix, "torchscript")


def load_trained(arch: AnyArch, weights: str | Path) -> ProxylessNet | TreeNet:
    """`build_net(arch)` in eval mode with trained weights: a `.safetensors` file, or a training
    checkpoint `.pt` (read with weights_only=True; refused when it was saved for another architecture)."""
    net = build_net(arch)
    path = Path(weights)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        load_weights(net, path)
    elif suffix in (".pt", ".pth"):
        load_state(net, load_checkpoint(path, arch)["model"], str(path))
    else:
        raise UserError(f"--weights {path.name}: expected weights.safetensors or a training checkpoint.pt")
    return net.eval()


def _onnx_bytes(net: nn.Module, example: torch.Tensor) -> bytes:
    return export_onnx(net, example, dynamic_batch=True)


@contextmanager
def _torchscript_on_purpose() -> Iterator[None]:
    """Silence torch's deprecation warnings for torch.jit: TorchScript was asked for by name."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        yield


def _torchscript_bytes(net: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with torch.no_grad(), _torchscript_on_purpose():
        torch.jit.save(torch.jit.trace(net, example), buffer)
    return buffer.getvalue()


def _torch_export_bytes(net: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with torch.no_grad():
        program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, buffer)
    return buffer.getvalue()


EXPORTERS: dict[str, Callable[[nn.Module, torch.Tensor], bytes]] = {
    "onnx": _onnx_bytes, "torchscript": _torchscript_bytes, "torch-export": _torch_export_bytes}
CHECKED_WITH = {"onnx": "onnxruntime", "torchscript": "torch.jit.load", "torch-export": "torch.export.load"}


def load_exported(data: bytes, fmt: str) -> Forward:
    """A callable running the exported model in `data` (ONNX through onnxruntime on the CPU)."""
    check_format(fmt)
    if fmt == "onnx":
        session = onnxruntime_session(data)
        name = session.get_inputs()[0].name
        return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    try:
        if fmt == "torchscript":
            with _torchscript_on_purpose():
                return torch.jit.load(io.BytesIO(data), map_location="cpu")
        return torch.export.load(io.BytesIO(data)).module()
    except Exception as err:  # torch raises RuntimeError, zipfile and pickle errors for foreign files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"cannot load it as {fmt} ({first}); was it written by `proxyless export`?") from None


def read_exported(path: str | Path, fmt: str | None = None) -> Forward:
    """`load_exported` of a file, its format from the suffix unless given."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ExportError(f"cannot read the exported model {str(path)!r}: {err.strerror}") from None
    try:
        return load_exported(data, fmt or format_of(path))
    except ExportError as err:
        raise ExportError(f"{path}: {err}") from None


def max_abs_diff(net: nn.Module, run: Forward, batches: tuple[int, ...], input_size: int, seed: int = 0) -> float:
    """The largest |run(x) - net(x)| over random inputs of each batch size (inf for NaN or a wrong shape)."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for batch in batches:
            x = torch.randn(batch, 3, input_size, input_size, generator=generator)  # (B, 3, H, W)
            expected, got = net(x), run(x)
            diff = float((got - expected).abs().max()) if got.shape == expected.shape else math.inf
            worst = max(worst, diff if math.isfinite(diff) else math.inf)
    return worst


def export_net(net: ProxylessNet | TreeNet, fmt: str, out: str | Path, batch_size: int = 2, tolerance: float = 1e-4,
               verify_onnxruntime: bool = False) -> ExportResult:
    """Export `net` to `out` as `fmt`, check it against eager (ONNX: only with `verify_onnxruntime`),
    then write it and its record in export.json; raises ExportError, writing nothing, when it differs."""
    out = Path(out)
    _check_request(fmt, out, batch_size, tolerance)
    if fmt == "onnx" and verify_onnxruntime:  # before exporting: a missing package is named at once
        require("onnxruntime", "onnx", "--verify-onnxruntime")
    net = net.eval()
    size = net.arch.input_size
    example_batch = max(batch_size, 2)  # torch.export turns a dimension of size 1 into a constant
    data = EXPORTERS[fmt](net, torch.randn(example_batch, 3, size, size))
    # 1. reload exactly the bytes about to be written; 2. compare at two batch sizes; 3. write
    checked_with = CHECKED_WITH[fmt] if fmt != "onnx" or verify_onnxruntime else None
    batches = (example_batch, example_batch + 1)
    diff = max_abs_diff(net, load_exported(data, fmt), batches, size) if checked_with else None
    if diff is not None and diff > tolerance:
        raise ExportError(f"the {fmt} export differs from the eager model by {diff:.3g} (max abs, batches "
                          f"{batches[0]} and {batches[1]}, {checked_with}), above --tolerance {tolerance:g}; "
                          f"{out} was left as it was")
    atomic_write(out, lambda tmp: tmp.write_bytes(data))
    result = ExportResult(fmt, out.name, size, example_batch, batches, diff, tolerance, checked_with,
                          dynamic_batch=fmt != "torchscript", torch=torch.__version__)
    write_record(result, out.parent / RECORD_NAME)
    return result


def _check_request(fmt: str, out: Path, batch_size: int, tolerance: float) -> None:
    check_format(fmt)
    if format_of(out) != fmt:
        raise UserError(f"--out {out.name} would be read back as {format_of(out)} (by its suffix); "
                        f"name a {fmt} file *{SUFFIXES[fmt]}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise UserError(f"--batch-size must be a positive integer, got {batch_size!r}")
    if not tolerance >= 0:
        raise UserError(f"--tolerance must be a number >= 0, got {tolerance!r}")


def write_record(result: ExportResult, path: str | Path) -> Path:
    """Add `result` to the export.json at `path`, keyed by file name (one folder may hold several exports)."""
    path = Path(path)
    records = read_records(path)
    records[result.file] = result.to_dict()
    return atomic_write_text(path, json.dumps({"format": RECORD_FORMAT, "exports": records}, indent=2) + "\n")


def read_records(path: str | Path) -> dict[str, dict]:
    """The records of an export.json by file name; {} when it is missing or not one (it is then rewritten)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT or not isinstance(data.get("exports"), dict):
        return {}
    return data["exports"]


def recorded_input_size(path: str | Path) -> int | None:
    """The image size `proxyless export` recorded for the file at `path`, if it did."""
    record = read_records(Path(path).parent / RECORD_NAME).get(Path(path).name, {})
    size = record.get("input_size") if isinstance(record, dict) else None
    return size if isinstance(size, int) else None
