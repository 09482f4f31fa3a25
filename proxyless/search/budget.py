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


def most_probable_within(model: LatencyModel, probs: list[torch.Tensor], low: float, high: float,
                         bonus: list[np.ndarray] | None = None) -> list[int] | None:
    """Indices of the most probable architecture with predicted latency in [low, high] ms; None if none exists."""
    found = most_probable_k_within(model, probs, low, high, k=1, bonus=bonus)
    return found[0] if found else None


def most_probable_k_within(model: LatencyModel, probs: list[torch.Tensor], low: float, high: float,
                           k: int, bonus: list[np.ndarray] | None = None) -> list[list[int]]:
    """The `k` most probable distinct architectures with predicted latency in [low, high] ms, most probable
    first (fewer if the band holds fewer; none if it holds none). `bonus` (per layer, one number per
    candidate) is added to log p before the sum is maximised, e.g. to rank depth before probability.

    The dynamic programme keeps, for every latency bin, the k best partial paths instead of one: each is
    a distinct sequence of choices, so the k found are distinct architectures.
    """
    assert k >= 1, k
    cal = model.calibration
    assert cal.scale > 0, "a calibration must keep latency increasing"
    # 1. the band in raw per-op-sum milliseconds, without the fixed parts
    raw_low, raw_high = (low - cal.offset) / cal.scale - model.fixed, (high - cal.offset) / cal.scale - model.fixed
    if raw_high <= 0:
        return []
    resolution = raw_high / BINS
    # 2. best[b, r] = the r-th highest Σ log p over the layers so far with a latency of about b · resolution;
    #    per layer, choice[b, r] and rank[b, r] say which candidate and which entry of the bin before led there
    best = np.full((BINS + 1, k), -np.inf)
    best[0, 0] = 0.0
    steps, shifts_per_layer = [], []
    for layer, (lat, p) in enumerate(zip(model.per_layer, probs)):
        log_p = np.log(np.clip(p.detach().double().cpu().numpy(), 1e-30, None))
        if bonus is not None:
            log_p = log_p + bonus[layer]
        shifts = np.rint(lat.numpy() / resolution).astype(int)
        moved = np.full((BINS + 1, len(shifts), k), -np.inf)  # (bin, candidate, rank before)
        for c, (shift, lp) in enumerate(zip(shifts, log_p)):
            if shift <= BINS:
                moved[shift:, c] = best[: BINS + 1 - shift] + lp
        flat = moved.reshape(BINS + 1, -1)
        top = np.argsort(-flat, axis=1, kind="stable")[:, :k]  # (bin, k) into candidate·k + rank
        best = np.take_along_axis(flat, top, axis=1)
        steps.append((top // k, top % k))
        shifts_per_layer.append(shifts)
    # 3. the k best entries of the bins inside the band, each walked back to its choices
    first = max(0, int(np.ceil(raw_low / resolution)))
    if first > BINS:
        return []
    inside = best[first:].ravel()
    order = [i for i in np.argsort(-inside, kind="stable")[:k] if np.isfinite(inside[i])]
    found = []
    for i in order:
        end, rank = first + int(i) // k, int(i) % k
        indices = []
        for (choice, before), shifts in zip(reversed(steps), reversed(shifts_per_layer)):
            c = int(choice[end, rank])
            indices.append(c)
            end, rank = end - int(shifts[c]), int(before[end, rank])
        found.append(indices[::-1])
    return found
