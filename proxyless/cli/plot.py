"""`proxyless plot RUN_DIR`: the figures of a training or search run, as PNG files.

    curves.png         loss and top-1 per epoch (both kinds of run)
    arch.png           the architecture: trained, derived, or mid-search the current argmax
    alpha_heatmap.png  search: every layer's candidate probabilities per epoch
    latency.png        search with a latency target: expected and argmax latency per epoch vs the target
"""

from __future__ import annotations

import argparse
from pathlib import Path

from proxyless.arch import Arch
from proxyless.cli.common import add_command
from proxyless.figures import LATENCY_CURVES, draw_alpha_heatmap, draw_archs, draw_curves, draw_latency
from proxyless.infra.run_files import RunFiles, read_run
from proxyless.search.hardware import parse_target

EXAMPLES = """\
  proxyless plot runs/search-proxyless-cifar       # curves.png, arch.png, alpha_heatmap.png (+ latency.png)
  proxyless plot runs/train-mobilenetv2_0.35       # curves.png, arch.png
  proxyless plot runs/cifar --out docs/figures     # the PNGs elsewhere
"""


def register(subparsers) -> None:
    parser = add_command(subparsers, "plot", "Draw a training or search run's curves, α and architecture as PNGs.",
                         EXAMPLES)
    parser.add_argument("run_dir", help="run directory of `proxyless train` or `proxyless search`")
    parser.add_argument("--out", help="directory for the PNGs (default: RUN_DIR)")
    parser.set_defaults(handler=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    run = read_run(args.run_dir)
    out = Path(args.out) if args.out else run.path
    for path in write_plots(run, out):
        print(f"wrote {path}")
    return 0


def write_plots(run: RunFiles, out: Path) -> list[Path]:
    """Draw every figure the run's files allow into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    name = run.path.resolve().name
    kind = "search" if run.is_search else "training"
    written = [draw_curves(run.metrics, out / "curves.png", title=f"{kind} run {name}")]
    labelled = _arch_to_draw(run)
    if labelled is not None:
        label, arch = labelled
        written.append(draw_archs([(name, arch)], out / "arch.png", title=f"{label} ({arch.space.name})"))
    if run.is_search:
        written.append(draw_alpha_heatmap(run.history, run.candidates(), out / "alpha_heatmap.png",
                                          title=f"α per layer over the search {name}"))
    if any(column in row for row in run.metrics for column in LATENCY_CURVES):
        written.append(draw_latency(run.metrics, _target_ms(run), out / "latency.png",
                                    title=f"latency over the search {name}"))
    return written


def _arch_to_draw(run: RunFiles) -> tuple[str, Arch] | None:
    """(label, arch): arch.json, or for a search that has not derived one yet its latest argmax."""
    if run.arch is not None:
        return ("derived architecture" if run.is_search else "trained architecture"), run.arch
    if run.is_search and run.space is not None:
        last = run.history[-1]
        return f"argmax at epoch {last['epoch']}", Arch.from_strings(run.space, last["ops"])
    return None


def _target_ms(run: RunFiles) -> float | None:
    """The search's latency target: from latency.json once it finished, else from its flags."""
    if isinstance(run.latency.get("target_ms"), (int, float)):
        return float(run.latency["target_ms"])
    target = run.settings.get("target_latency")
    return parse_target(str(target)) if target is not None else None
