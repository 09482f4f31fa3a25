"""Which path a weight step trains: during warmup uniformly or with strict fairness, after it by α.

    uniform   each layer's candidate drawn uniformly and independently (SPOS; `SuperNet.sample_single`);
              over a short warmup some candidates get noticeably more steps than others by chance
    fair      strict fairness (FairNAS): in every cycle of n steps (n = the most candidates of any layer)
              each candidate of each layer is trained once, in an order drawn per layer and cycle; a layer
              with fewer candidates repeats some of them within the cycle
    by α      after warmup, each layer's candidate drawn from p = softmax(α) (ProxylessNAS), see
              `SuperNet.sample_single`

Every plan is a function of (seed, global step) only, so a resumed search replays the same paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from proxyless.infra.distributed import keyed_generator

SAMPLINGS = ("uniform", "fair")
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

