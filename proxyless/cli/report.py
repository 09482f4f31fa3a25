"""`proxyless report RUN_DIR`: a search run as one Markdown page with its figures.

The page holds the settings, the derived architecture (one row per layer with its shape, op, final
probability and entropy), the latency against the target (predicted, the argmax's, measured), the
per-epoch metrics, and two figures written next to it: `arch.png` (the architecture diagram) and
`alpha.png` (how each layer's probabilities and entropy evolved). A search for several latency targets
gets a page per target, in the target's subdirectory (`proxyless report RUN_DIR` writes them all).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from proxyless.arch import Arch, load_arch
from proxyless.cli.common import add_command
from proxyless.errors import UserError
from proxyless.figures import draw_alpha, draw_archs
from proxyless.infra.atomic import atomic_write_text
from proxyless.infra.run_files import read_json_object, read_jsonl, run_settings
from proxyless.ops import format_op

EXAMPLES = """\
  proxyless report runs/search-proxyless-cifar            # writes RUN_DIR/report.md, arch.png, alpha.png
  proxyless report runs/cifar --out docs/cifar_search.md  # the page elsewhere (figures beside it)
  proxyless report runs/family                            # a page per target: runs/family/46ms/report.md, ...
"""


def register(subparsers) -> None:
    parser = add_command(subparsers, "report", "Write a Markdown report (tables and figures) of a search run.",
                         EXAMPLES)
    parser.add_argument("run_dir", help="search run directory (with arch.json and arch_history.jsonl)")
    parser.add_argument("--out", help="Markdown file to write (default: RUN_DIR/report.md)")
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    members = family_members(run_dir)
    if members and args.out:
        raise UserError(f"'{run_dir}' is a search for several latency targets, with a page per target; drop --out "
                        f"(or report one: `proxyless report {run_dir / members[0]} --out PAGE`)")
    for where, out in ([(run_dir / m, run_dir / m / "report.md") for m in members]
                       or [(run_dir, Path(args.out) if args.out else run_dir / "report.md")]):
        path = write_report(where, out)
        print(f"wrote {path} with {out.parent / 'arch.png'} and {out.parent / 'alpha.png'}")
    return 0


def family_members(run_dir: Path) -> list[str]:
    """The targets' subdirectories of a family's run directory (its result.json lists them); [] otherwise."""
    listed = read_json_object(run_dir / "result.json").get("family")
    return [m["label"] for m in listed if isinstance(m, dict) and "label" in m] if isinstance(listed, list) else []


def write_report(run_dir: Path, out: Path) -> Path:
    """Read a search run's files (or a family member's, with the family's settings and its own columns of
    the metrics) and write the Markdown page and its two figures to `out`'s folder."""
    if not run_dir.is_dir():
        raise UserError(f"run directory '{run_dir}' does not exist; pass the --out of a `proxyless search`")
    if not (run_dir / "arch.json").is_file():
        raise UserError(f"'{run_dir}' has no arch.json: the search has not finished; resume it "
                        f"(`proxyless search --resume {run_dir}`) or derive one (`proxyless derive {run_dir}`)")
    arch = load_arch(run_dir / "arch.json")
    history = read_jsonl(run_dir / "arch_history.jsonl")
    if not history:
        raise UserError(f"'{run_dir}/arch_history.jsonl' is missing or empty; is '{run_dir}' a search run?")
    member = run_dir.name in family_members(run_dir.parent)
    root = run_dir.parent if member else run_dir
    metrics = [member_columns(row, run_dir.name) for row in read_jsonl(root / "metrics.jsonl")] if member else (
        read_jsonl(run_dir / "metrics.jsonl"))
    settings = run_settings(root)
    latency = read_json_object(run_dir / "latency.json")
    if member:  # the family's settings list every target: this page is about one
        targets = read_json_object(root / "config.json").get("latency") or []
        mine = next((t for t in targets if isinstance(t, dict) and f"{t.get('target_ms', 0):g}ms" == run_dir.name), {})
        settings.update(lut=mine.get("lut"), target_latency=run_dir.name, latency_loss=mine.get("loss"))
    out.parent.mkdir(parents=True, exist_ok=True)
    candidates = [[format_op(op) for op in slot.candidates] for slot in arch.space.layers()]
    draw_archs([(run_dir.name, arch)], out.parent / "arch.png", title=f"derived architecture ({arch.space.name})")
    draw_alpha(history, arch.op_strings(), candidates, out.parent / "alpha.png",
               title=f"α over the search {run_dir.name}")
    sections = [f"# Search report: {run_dir.name}\n", _settings(settings), _arch_table(arch, history[-1], candidates),
                "![architecture](arch.png)\n", _latency(latency), _metrics(metrics), "![alpha](alpha.png)\n"]
    return atomic_write_text(out, "\n".join(s for s in sections if s))


def member_columns(row: dict[str, Any], label: str) -> dict[str, Any]:
    """A family's metrics row as target `label`'s own: the shared columns, and its 'name@label' as 'name'."""
    shared = {key: value for key, value in row.items() if "@" not in key}
    return {**shared, **{key.split("@")[0]: value for key, value in row.items() if key.endswith(f"@{label}")}}


def _settings(settings: dict[str, Any]) -> str:
    keys = ("space", "data", "strategy", "mode", "epochs", "warmup_epochs", "batch_size", "lr", "arch_lr",
            "arch_every", "seed", "lut", "target_latency", "latency_loss")
    rows = [f"| {key} | {settings[key]} |" for key in keys if settings.get(key) is not None]
    return "## Settings\n\n| setting | value |\n|---|---|\n" + "\n".join(rows) + "\n" if rows else ""


def _arch_table(arch: Arch, last: dict[str, Any], candidates: list[list[str]]) -> str:
    rows = []
    for slot, op, probs, entropy, names in zip(arch.space.layers(), arch.op_strings(), last["probs"], last["entropy"],
                                               candidates):
        rows.append(f"| {slot.index} | {slot.stage} | {slot.input_size} px, {slot.in_channels}→{slot.out_channels}, "
                    f"s{slot.stride} | {op} | {probs[names.index(op)]:.2f} | "
                    f"{entropy:.2f} / {math.log(len(names)):.2f} |")
    return ("## Derived architecture\n\n"
            "| layer | stage | input, channels, stride | op | p(op) | entropy / uniform |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def _latency(latency: dict[str, Any]) -> str:
    if not latency:
        return "## Latency\n\nNo latency target in this search (no `--lut`/`--target-latency`).\n"
    lines = [f"- target: {latency['target_ms']:g} ms ({latency['loss']} loss)",
             f"- predicted: {latency['predicted_ms']:.2f} ms ({latency['error']:+.1%}, "
             f"{'on target' if latency.get('predicted_on_target', latency['on_target']) else 'missed'}); "
             f"derived by {latency['derived_by']}",
             f"- the argmax architecture would take {latency['argmax_predicted_ms']:.2f} ms (predicted)"]
    if latency.get("measured_ms") is not None:
        lines.append(f"- measured: {latency['measured_ms']:.2f} ± {latency['measured_std_ms']:.2f} ms "
                     f"({latency['backend']}, {latency['measured_ms'] / latency['target_ms'] - 1:+.1%} of the target, "
                     f"{'on target' if latency['on_target'] else 'MISSED: see `proxyless derive --measured-derive`'})")
    elif latency.get("not_measured"):
        lines.append(f"- not measured: {latency['not_measured']}")
    else:
        lines.append("- not measured (`--no-measure`); time it with `proxyless latency measure --arch`")
    return "## Latency\n\n" + "\n".join(lines) + "\n"


def _metrics(metrics: list[dict[str, Any]]) -> str:
    if not metrics:
        return ""
    columns = [("epoch", "{:d}"), ("train_loss", "{:.3f}"), ("train_top1", "{:.3f}"), ("valid_top1_argmax", "{:.3f}"),
               ("mean_entropy", "{:.3f}"), ("argmax_latency_ms", "{:.2f}"), ("expected_latency_ms", "{:.2f}"),
               ("latency_weight", "{:.3g}")]
    shown = [(name, form) for name, form in columns if any(name in row for row in metrics)]
    head = "| " + " | ".join(name for name, _ in shown) + " |\n|" + "---|" * len(shown) + "\n"
    body = "\n".join("| " + " | ".join(form.format(row[name]) if name in row else "" for name, form in shown) + " |"
                     for row in metrics)
    return "## Per epoch\n\n" + head + body + "\n"
