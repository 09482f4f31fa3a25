"""What several test modules share: the tiny search spaces and a made-up latency table.

Import with `from helpers import ...` (pytest puts `tests/` on the path, as for `conftest.py`).
A test that needs a variant passes the difference, e.g. `tiny_space(candidates, input_size=8)`, so the
difference stays visible where it matters.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from proxyless.latency.keys import Context, all_keys
from proxyless.latency.lut import LatencyTable, Stat
from proxyless.ops import parse_op
from proxyless.space import SearchSpace, Stage

OPS = ("mb_k3_e3", "mb_k5_e6")


def tiny_space(candidates: tuple[str, ...] = OPS, **changes: Any) -> SearchSpace:
    """16 px, 4 classes, three layers (8 ch twice at stride 1, then 16 ch at stride 2): quick to time."""
    space = SearchSpace(
        name="tiny", input_size=16, stem_channels=8, stem_stride=2, first_block_channels=8,
        stages=(Stage(8, 2, 1), Stage(16, 1, 2)), candidates=tuple(parse_op(op) for op in candidates),
        feature_mix_channels=16, num_classes=4,
    )
    return replace(space, **changes)


def tiny32_space(candidates: tuple[str, ...] = OPS, **changes: Any) -> SearchSpace:
    """32 px, 10 classes, four layers: searchable and trainable on the embedded CIFAR-10 sample."""
    return tiny_space(candidates, **{"name": "tiny32", "input_size": 32, "stages": (Stage(8, 2, 2), Stage(16, 2, 2)),
                                     "feature_mix_channels": 32, "num_classes": 10, **changes})


def synthetic_table(space: SearchSpace | None = None) -> LatencyTable:
    """Distinct made-up latencies growing with kernel · expansion (k5e6 is the slow op), batch 1, for
    every key of `space` (default `tiny32_space()`): no timing needed to search against them."""
    space = tiny32_space() if space is None else space
    entries = {key: Stat(0.1 + 0.02 * key.kernel * key.expand, 0.0, 3) for key in all_keys(space, Context(batch=1))}
    return LatencyTable({"backend": "torch-cpu", "batch": 1, "dtype": "float32", "threads": 1}, entries)


def trained_like(net: torch.nn.Module) -> torch.nn.Module:
    """`net` with random α and BN affine terms (no zero-initialised branch left), so that every path
    matters to the output, as in a supernet after some training; returns it."""
    with torch.no_grad():
        for alpha in net.arch_parameters():
            alpha.normal_()
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.1)
    return net


def expected_alpha_grad(alpha: torch.Tensor, active: int, inactive: int, gate_grad: torch.Tensor) -> torch.Tensor:
    """The α gradient ProxylessNAS-G should give a layer whose two sampled candidates' gates got `gate_grad`:
    dL/dα_i = Σ_k dL/dg_k p_k (δ_ik − p_i) over the two sampled logits (p renormalised over them), 0 elsewhere."""
    idx = [active, inactive]
    p = torch.softmax(alpha.detach()[idx], 0)
    expected = torch.zeros_like(alpha)
    for i in range(2):
        expected[idx[i]] = sum(gate_grad[k] * p[k] * (float(i == k) - p[i]) for k in range(2))
    return expected
