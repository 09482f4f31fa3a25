"""Which path a weight step trains: during warmup uniformly or with strict fairness, after it by α.

    uniform   each layer's candidate drawn uniformly and independently (SPOS; `SuperNet.sample_single`);
              over a short warmup some candidates get noticeably more steps than others by chance
    fair      strict fairness (FairNAS): in every cycle of n steps (n = the most candidates of any layer)
              each candidate of each layer is trained once, in an order drawn per layer and cycle; a layer
              with fewer candidates repeats some of them within the cycle
    fair-largest  every other step the largest path (each layer's candidate with the most weights: with
              entangled weights it trains every weight of the layer at once), the steps between strictly
              fair; a sandwich rule (BigNAS) with one path per step. Fair sampling trains the channels only
              e6 uses half as often as e3's and the outer ring of a 7x7 kernel a third as often as the 3x3
              centre (entangled weights): small candidates come out of warmup better trained
    by α      after warmup, each layer's candidate drawn from p = softmax(α) (ProxylessNAS), see
              `SuperNet.sample_single`

Every plan is a function of (seed, global step) only, so a resumed search replays the same paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from proxyless.infra.distributed import keyed_generator

SAMPLINGS = ("uniform", "fair", "fair-largest")
_FAIR_STREAM = 3  # keeps the fair orders apart from the other keyed streams of a search


def fair_plan(sizes: Sequence[int], seed: int, step: int) -> list[int]:
    """The candidate of each layer (sizes[i] candidates at layer i) at global weight step `step`."""
    n = max(sizes)
    cycle, position = divmod(step, n)
    plan = []
    for layer, size in enumerate(sizes):
        order = torch.randperm(n, generator=keyed_generator(seed, cycle, layer, _FAIR_STREAM))  # (n,)
        plan.append(int(order[position]) % size)
    return plan


def fair_largest_plan(sizes: Sequence[int], largest: Sequence[int], seed: int, step: int) -> list[int]:
    """`largest` (each layer's candidate with the most weights) at even global steps, the fair plan at the
    odd ones (the fair cycle advanced once per two steps, so every candidate still gets its turn)."""
    if step % 2 == 0:
        return list(largest)
    return fair_plan(sizes, seed, step // 2)
