"""Figures of architectures and of how a search's α evolved (matplotlib, written as PNG).

- `draw_archs`: one row per architecture, one box per searchable layer, in the style of the
  ProxylessNAS paper's Figure 4: box width grows with the kernel size, height with the expansion
  ratio, colour per op; a `zero` layer is an empty dashed outline; grey lines separate stages.
- `draw_alpha`: per epoch, the probability of the op each layer ended up with (heat map) and each
  layer's entropy, with the mean entropy against its uniform maximum.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from proxyless.arch import Arch
from proxyless.ops import MBConv

KERNEL_WIDTH = {3: 0.45, 5: 0.65, 7: 0.85}
EXPAND_HEIGHT = {1: 0.3, 3: 0.5, 6: 0.85}
OP_COLOURS = {  # (kernel, expand) -> colour; lighter for expand 3, darker for 6
    (3, 3): "#a6cee3", (3, 6): "#1f78b4", (5, 3): "#b2df8a", (5, 6): "#33a02c",
    (7, 3): "#fb9a99", (7, 6): "#e31a1c", (3, 1): "#cab2d6", (5, 1): "#cab2d6", (7, 1): "#cab2d6",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_archs(archs: Sequence[tuple[str, Arch]], path: str | Path, title: str = "") -> Path:
    """Draw `(label, arch)` rows side by side on the same layer axis and save a PNG to `path`."""
    from matplotlib.patches import Patch, Rectangle

    plt = _pyplot()
    layers = max(arch.space.num_layers for _, arch in archs)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * layers + 2.2), 0.95 * len(archs) + 1.3))
    for row, (label, arch) in enumerate(archs):
        y = len(archs) - 1 - row
        for index, (slot, op) in enumerate(zip(arch.space.layers(), arch.ops)):
            if isinstance(op, MBConv):
                width, height = KERNEL_WIDTH.get(op.kernel, 0.85), EXPAND_HEIGHT.get(op.expand, 0.85)
                ax.add_patch(Rectangle((index - width / 2, y - height / 2), width, height,
                                       facecolor=OP_COLOURS.get((op.kernel, op.expand), "0.5"), edgecolor="black", lw=0.6))
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
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
