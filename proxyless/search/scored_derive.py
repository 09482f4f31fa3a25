"""Deriving under a latency target by the supernet's own judgement, not α's alone.

α says which nets of the target band are likely; a trained supernet can tell apart nets of equal cost
better than α's argmax does (on NAS-Bench-Macro it orders nets within ±5% of the median latency at
Kendall τ 0.6-0.85, see `benchmarks/search_quality.py`). So: take the `k` most probable nets within
the derive band (`budget.most_probable_k_within`) and the latency rule's own pick, score each on the
same held-out valid images with the supernet (its running BN statistics, which ranked better than
recalibrated ones there), and keep the best; ties go to the more probable net.

    derive = scored_derive(objective, valid_batches, k=10)   # a `Derive`: supernet -> (indices, how)
    indices, how = derive(supernet)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from proxyless.search.budget import most_probable_k_within
from proxyless.search.loop import Derive
from proxyless.search.objective import LatencyObjective
from proxyless.search.quality import subnet_accuracy
from proxyless.search.supernet import SuperNet

DERIVE_IMAGES = 2000  # valid images each candidate is scored on (the same ones for all)
Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]  # (images (B, 3, H, W), labels (B,)), decoded once


def scored_derive(objective: LatencyObjective, batches: Batches, k: int,
                  memory_format: torch.memory_format = torch.channels_last) -> Derive:
    """A `Derive` that keeps, of the `k` most probable nets within the target band and the latency
    rule's own pick, the one with the best valid top-1 in the supernet on `batches`."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")

    def derive(supernet: SuperNet) -> tuple[list[int], str]:
        kept, how = objective.derive(supernet)
        low, high = objective.derive_band()
        candidates = most_probable_k_within(objective.model, supernet.probs(), low, high, k,
                                            objective.depth_bonus(supernet))
        if kept not in candidates:
            candidates.insert(0, kept)
        scores = [subnet_accuracy(supernet, indices, batches, memory_format=memory_format) for indices in candidates]
        best = max(range(len(candidates)), key=lambda i: (scores[i], -i))  # ties: the earlier, more probable
        if candidates[best] == kept:
            return kept, f"{how}; it scored best of {len(candidates)} nets in the band (valid top-1 {scores[best]:.3f})"
        return candidates[best], (f"best valid top-1 in the supernet ({scores[best]:.3f}) of the {len(candidates)} "
                                  f"most probable nets within the target band (the latency rule kept another: {how})")

    return derive
