"""Deriving under a latency budget: the most probable architecture whose predicted latency is in a band.

The argmax of α is the most probable architecture, but its latency jumps in steps (one early layer
switching from k3 to k7 can cost a fifth of the net), so a search steered towards a target T can end
a few percent off. This picks, among all architectures with low ≤ LAT ≤ high, the one maximising
Σ_layers log p(op): a multiple-choice knapsack, solved exactly up to the latency resolution by dynamic
programming over latency bins (layers × candidates × bins steps; ~10^6 for a 21-layer space).
"""

from __future__ import annotations

import numpy as np
import torch

from proxyless.latency.predict import LatencyModel

BINS = 4000


def most_probable_within(model: LatencyModel, probs: list[torch.Tensor], low: float, high: float) -> list[int] | None:
    """Indices of the most probable architecture with predicted latency in [low, high] ms; None if none exists."""
    cal = model.calibration
    assert cal.scale > 0, "a calibration must keep latency increasing"
    # 1. the band in raw per-op-sum milliseconds, without the fixed parts
    raw_low, raw_high = (low - cal.offset) / cal.scale - model.fixed, (high - cal.offset) / cal.scale - model.fixed
    if raw_high <= 0:
        return None
    resolution = raw_high / BINS
    # 2. best[b] = the highest Σ log p over the layers so far with a latency of about b · resolution
    best = np.full(BINS + 1, -np.inf)
    best[0] = 0.0
    choices = []
    for lat, p in zip(model.per_layer, probs):
        log_p = np.log(np.clip(p.detach().double().cpu().numpy(), 1e-30, None))
        shifts = np.rint(lat.numpy() / resolution).astype(int)
        new, choice = np.full_like(best, -np.inf), np.full(BINS + 1, -1)
        for k, (shift, lp) in enumerate(zip(shifts, log_p)):
            if shift > BINS:
                continue
            moved = np.full_like(best, -np.inf)
            moved[shift:] = best[: BINS + 1 - shift] + lp
            better = moved > new
            new[better], choice[better] = moved[better], k
        best = new
        choices.append(choice)
    # 3. walk back from the best bin inside the band
    first = max(0, int(np.ceil(raw_low / resolution)))
    if first > BINS or not np.isfinite(best[first:]).any():
        return None
    end = first + int(np.argmax(best[first:]))
    indices = []
    for layer, choice in reversed(list(zip(model.per_layer, choices))):
        k = int(choice[end])
        indices.append(k)
        end -= int(np.rint(float(layer[k]) / resolution))
    return indices[::-1]
