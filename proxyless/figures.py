"""Figures of architectures and of how a search's α evolved (matplotlib, written as PNG).

- `draw_archs`: one row per architecture, one box per searchable layer, in the style of the
  ProxylessNAS paper's Figure 4: box width grows with the kernel size, height with the expansion
  ratio, colour per op; a `zero` layer is an empty dashed outline; grey lines separate stages.
- `draw_alpha`: per epoch, the probability of the op each layer ended up with (heat map) and each
  layer's entropy, with the mean entropy against its uniform maximum.
- `draw_alpha_heatmap`: one small heat map per layer, candidates × epochs, coloured by p relative to
  uniform, so that every candidate's probability can be followed, not only the winner's.
- `draw_curves`: loss and top-1 per epoch of a training or search run.
- `draw_latency`: a search's expected and argmax latency per epoch against its target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxyless.arch import Arch
from proxyless.infra.extras import require
from proxyless.ops import MBConv

KERNEL_WIDTH = {3: 0.45, 5: 0.65, 7: 0.85}
EXPAND_HEIGHT = {1: 0.3, 3: 0.5, 6: 0.85}
OP_COLOURS = {  # (kernel, expand) -> colour; lighter for expand 3, darker for 6
    (3, 3): "#a6cee3", (3, 6): "#1f78b4", (5, 3): "#b2df8a", (5, 6): "#33a02c",
    (7, 3): "#fb9a99", (7, 6): "#e31a1c", (3, 1): "#cab2d6", (5, 1): "#cab2d6", (7, 1): "#cab2d6",
}


def _pyplot():
    """matplotlib.pyplot drawing to files (Agg). Called before any other matplotlib import, so that
    without matplotlib the error is MissingExtra naming `proxyless[plot]`."""
    matplotlib = require("matplotlib", "plot", "drawing figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_archs(archs: Sequence[tuple[str, Arch]], path: str | Path, title: str = "") -> Path:
    """Draw `(label, arch)` rows side by side on the same layer axis and save a PNG to `path`."""
    plt = _pyplot()
    from matplotlib.patches import Patch, Rectangle
    layers = max(arch.space.num_layers for _, arch in archs)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * layers + 2.2), 0.95 * len(archs) + 1.3))
    for row, (label, arch) in enumerate(archs):
        y = len(archs) - 1 - row
        for index, (slot, op) in enumerate(zip(arch.space.layers(), arch.ops)):
            if isinstance(op, MBConv):
                width, height = KERNEL_WIDTH.get(op.kernel, 0.85), EXPAND_HEIGHT.get(op.expand, 0.85)
                ax.add_patch(Rectangle((index - width / 2, y - height / 2), width, height,
                                       facecolor=OP_COLOURS.get((op.kernel, op.expand), "0.5"), edgecolor="black",
                                       lw=0.6))
            else:  # zero: the layer is skipped
                ax.add_patch(Rectangle((index - 0.3, y - 0.3), 0.6, 0.6, fill=False, edgecolor="0.6", ls="--", lw=0.6))
            if index > 0 and slot.block == 0:
                ax.axvline(index - 0.5, color="0.75", lw=0.8, zorder=0)
        ax.text(-0.8, y, label, ha="right", va="center", fontsize=9)
    ax.set_xlim(-0.7, layers - 0.3)
    ax.set_ylim(-0.7, len(archs) - 0.3)
    ax.set_yticks([])
    ax.set_xticks(range(layers))
    ax.set_xticklabels([str(i) for i in range(layers)], fontsize=7)
    ax.set_xlabel("searchable layer (grey lines: stage boundaries)")
    for spine in ("top", "right", "left"):
        ax.spines[spine].set_visible(False)
    handles = [Patch(facecolor=colour, edgecolor="black", label=f"k{k} e{e}")
               for (k, e), colour in OP_COLOURS.items() if e != 1]
    handles.append(Patch(facecolor="white", edgecolor="0.6", ls="--", label="zero (skip)"))
    ax.legend(handles=handles, ncol=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.38), frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path, dpi=130, bbox_inches="tight")


def draw_alpha(history: Sequence[dict], final_ops: Sequence[str], candidates: Sequence[Sequence[str]],
               path: str | Path, title: str = "") -> Path:
    """α over a search: `history` rows of arch_history.jsonl ({epoch, probs, entropy}), the derived
    ops, and each layer's candidate names (to find the derived op's probability)."""
    import numpy as np

    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    chosen = np.array([[row["probs"][layer][list(candidates[layer]).index(op)] for row in history]
                       for layer, op in enumerate(final_ops)])
    entropies = np.array([row["entropy"] for row in history]).T  # (layers, epochs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    image = left.imshow(chosen, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                        extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(final_ops) - 0.5, -0.5))
    left.set_xlabel("epoch")
    left.set_ylabel("searchable layer")
    left.set_yticks(range(0, len(final_ops), 2))
    left.set_title("p(derived op) per layer", fontsize=9)
    fig.colorbar(image, ax=left, fraction=0.05)
    for layer_entropy in entropies:
        right.plot(epochs, layer_entropy, color="0.75", lw=0.7)
    right.plot(epochs, entropies.mean(axis=0), color="tab:red", lw=2, label="mean over layers")
    uniform = float(np.mean([math.log(len(c)) for c in candidates]))
    right.axhline(uniform, color="black", ls="--", lw=0.8, label="uniform (mean)")
    right.set_xlabel("epoch")
    right.set_ylabel("entropy of p (nats)")
    right.set_title("entropy per layer (grey) and mean", fontsize=9)
    right.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def draw_alpha_heatmap(history: Sequence[dict], candidates: Sequence[Sequence[str]], path: str | Path,
                       title: str = "") -> Path:
    """p = softmax(α) of every candidate of every layer over a search: one panel per layer (rows:
    candidates, columns: epochs), titled with the layer's argmax and its p at the last epoch.

    The colour is p relative to uniform (p·K for K candidates: blue below 1, white at 1, red above),
    so that a short search's small moves away from uniform show as well as a long one's winners,
    and layers with and without `zero` (K = 7 or 6) read on one scale. The scale runs from 1/m to m,
    m the largest p·K seen (at least 1.05, so noise stays pale); losers below 1/m are clipped."""
    import numpy as np
    plt = _pyplot()
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.ticker import MaxNLocator
    epochs = [row["epoch"] for row in history]
    ratios = [np.array([row["probs"][layer] for row in history]).T * len(names)  # (candidates, epochs)
              for layer, names in enumerate(candidates)]
    top = max(1.05, max(float(r.max()) for r in ratios))
    norm = TwoSlopeNorm(vmin=1 / top, vcenter=1.0, vmax=top)
    cols = min(len(candidates), 7)
    rows = math.ceil(len(candidates) / cols)
    height = 0.22 * max(len(c) for c in candidates) + 0.9
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols + 1.2, height * rows + 0.8), squeeze=False,
                             layout="constrained")
    for layer, ax in enumerate(axes.flat):
        if layer >= len(candidates):
            ax.axis("off")
            continue
        names, ratio = candidates[layer], ratios[layer]
        image = ax.imshow(ratio, aspect="auto", cmap="RdBu_r", norm=norm, interpolation="nearest",
                          extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(names) - 0.5, -0.5))
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([_short_op(name) for name in names], fontsize=6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        ax.tick_params(axis="x", labelsize=6)
        best = int(ratio[:, -1].argmax())
        ax.set_title(f"layer {layer}: {_short_op(names[best])} (p {ratio[best, -1] / len(names):.2f})", fontsize=7)
    fig.supxlabel("epoch", fontsize=8)
    fig.colorbar(image, ax=axes, fraction=0.02, extend="min", label="p relative to uniform (p·K)")
    fig.suptitle(title or "α per layer over the search", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _short_op(name: str) -> str:
    """'mb_k3_e6' -> 'k3 e6' (panel labels are small)."""
    return name.removeprefix("mb_").replace("_", " ")


LOSS_CURVES = {"train_loss": "train", "test_loss": "test"}
TOP1_CURVES = {"train_top1": "train", "test_top1": "test", "valid_top1_argmax": "valid (argmax net)"}


def draw_curves(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss (left) and top-1 in % (right) per epoch, for whichever of the known columns the rows have."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    fig, (loss, top1) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, curves, scale in ((loss, LOSS_CURVES, 1.0), (top1, TOP1_CURVES, 100.0)):
        for column, label in curves.items():
            points = [(row["epoch"], row[column] * scale) for row in rows if _is_number(row.get(column))]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=8)
    loss.set_ylabel("cross-entropy loss")
    top1.set_ylabel("top-1 accuracy (%)")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


LATENCY_CURVES = {"expected_latency_ms": "expected under p (E[LAT])", "argmax_latency_ms": "argmax net (predicted)"}


def draw_latency(rows: Sequence[dict[str, Any]], target_ms: float | None, path: str | Path, title: str = "") -> Path:
    """A search's expected and argmax latency per epoch (ms), with the target as a dashed line."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for column, label in LATENCY_CURVES.items():
        points = [(row["epoch"], row[column]) for row in rows if _is_number(row.get(column))]
        if points:
            ax.plot(*zip(*points), marker="o", ms=3, label=label)
    if target_ms is not None:
        ax.axhline(target_ms, color="black", ls="--", lw=1, label=f"target {target_ms:g} ms")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("latency (ms)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _save(fig, path: str | Path, dpi: int = 120, **options: Any) -> Path:
    """Lay out, write and close `fig`."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, **options)
    _pyplot().close(fig)
    return Path(path)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
