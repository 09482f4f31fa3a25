"""A family of latency targets searched on one supernet: the weights are trained once, each target keeps
its own α, its own architecture optimizer and its own latency controller.

    arms = [Arm("30ms", strategy_30, derive_30, supernet), Arm("46ms", strategy_46, derive_46, supernet)]
    with use(supernet, arms, 1):      # α of the 46 ms target is the supernet's for the duration
        strategy_46.step(...)

A single search is a family of one, whose arm owns the supernet's own α: every search runs the same code.
Between steps the supernet holds the first arm's α; `use` swaps another arm's in and out (a copy of a few
small tensors), so everything that reads α (sampling, argmax, the derive rules, the latency objective's
controller) works on a family member unchanged.

How the family shares the work (`Searcher`): after the shared warmup, weight step s trains the path
sampled from the α of arm s mod K, so the weights see the paths of every target. Architecture step j
samples its two paths per layer from the α of arm j mod K and measures the cross-entropy's gradient once;
every arm's α learns from it (`ArchGradient.on` carries a two-path gradient over to another α exactly),
each adding its own latency term. So each α gets every architecture step, and K targets cost about one
search. (Until 2026-12-05 step j updated arm j mod K alone: each α got 1/K of the steps, and with them
too little signal to follow; see `search.signal`.) REINFORCE still takes turns: its sample belongs to
one arm's policy.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from proxyless.infra.atomic import atomic_write_text
from proxyless.search.strategies import ArchStrategy
from proxyless.search.supernet import SuperNet

Derive = Callable[[SuperNet], tuple[list[int], str]]  # supernet -> (kept index per layer, how they were chosen)


@dataclass
class Arm:
    """One target of a search: its label ('' for a single search, e.g. '46ms' in a family), the strategy
    that updates its α, the rule that derives its net, and its α while another arm's is loaded."""

    label: str
    strategy: ArchStrategy
    derive: Derive
    alphas: list[torch.Tensor] = field(default_factory=list)  # filled by `family_arms`; unused for arm 0
    last: dict[str, float] = field(default_factory=dict)  # its last architecture step's report

    def key(self, name: str) -> str:
        """This arm's column `name` in the metrics ('argmax_latency_ms@46ms'); a single search's is `name`."""
        return f"{name}@{self.label}" if self.label else name

    def suffixed(self, values: dict[str, Any]) -> dict[str, Any]:
        return {self.key(name): value for name, value in values.items()}


def initial_alphas(supernet: SuperNet) -> list[torch.Tensor]:
    """A copy of the supernet's α as it is now (every arm starts from the same, uniform α)."""
    return [alpha.detach().clone() for alpha in supernet.arch_parameters()]


@contextlib.contextmanager
def use(supernet: SuperNet, arms: Sequence[Arm], index: int) -> Iterator[Arm]:
    """Arm `index`'s α loaded into the supernet for the block (its updates kept in the arm after)."""
    arm = arms[index]
    if index == 0:  # the supernet's own α is the first arm's
        yield arm
        return
    params = supernet.arch_parameters()
    with torch.no_grad():
        resting = [p.detach().clone() for p in params]
        for p, alpha in zip(params, arm.alphas):
            p.copy_(alpha)
    try:
        yield arm
    finally:
        with torch.no_grad():
            arm.alphas = [p.detach().clone() for p in params]
            for p, alpha in zip(params, resting):
                p.copy_(alpha)


def target_label(target_ms: float) -> str:
    """'46ms', '30.5ms': a family member's name, and its subdirectory of the run."""
    return f"{target_ms:g}ms"


def write_listing(run_dir: Path, members: Sequence[dict[str, Any]]) -> None:
    """A family's top-level result.json: each target's label, arch.json and how its net was kept."""
    listing = [{key: member[key] for key in ("label", "arch_json", "derived_by")} for member in members]
    atomic_write_text(run_dir / "result.json", json.dumps({"family": listing}, indent=2) + "\n")
