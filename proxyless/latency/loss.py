"""Latency terms for the architecture loss, selectable by name.

With CE the cross-entropy of the architecture step, E = E[LAT] and T the target (ms):

    add     CE + λ·(E − T)/T
    mul     CE · (E/T)^β
    log     CE · (E/T)^β in log form:  log CE + β·log(E/T)
    hinge   CE + λ·max(0, E − T)/T       (only latency above the target is penalised)

`AdaptiveWeight` removes the hand-tuning of λ: after each architecture step it multiplies λ by
exp(rate·clip((L − T)/T, ±max_gap)), so λ grows while the latency L is above the target and shrinks
below it. The clip and the bounds keep one far-off phase (a search starting well under its target)
from driving λ so low that it takes the rest of the search to recover.

That controller only ever penalises latency: when the net is too fast, λ shrinks towards its floor but
nothing pushes latency up, and a search whose α prefers cheap ops ends under its target. With
`two_sided=True` λ follows dual ascent on the constraint L = T instead, λ ← λ + rate·gap·max(|λ|, λ₀):
geometric while |λ| is large, and through zero to negative values (which reward latency in the add,
mul and log forms) while the net stays too fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from proxyless.errors import UserError

KINDS = ("add", "mul", "log", "hinge")


@dataclass(frozen=True)
class LatencyLoss:
    kind: str
    target: float  # ms
    weight: float = 0.1  # λ for add/hinge, β for mul/log

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"latency loss must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not (math.isfinite(self.target) and self.target > 0):
            raise UserError(f"the target latency must be a positive number of ms, got {self.target}")

    def combine(self, ce: torch.Tensor, expected: torch.Tensor, weight: float | None = None) -> torch.Tensor:
        """The architecture loss from the task loss `ce` and the expected latency."""
        w = self.weight if weight is None else weight
        ratio = expected / self.target
        if self.kind == "add":
            return ce + w * (ratio - 1)
        if self.kind == "hinge":
            return ce + w * torch.relu(ratio - 1)
        if self.kind == "mul":
            return ce * ratio**w
        return torch.log(ce) + w * torch.log(ratio)


@dataclass
class AdaptiveWeight:
    """λ ← λ·exp(rate·clip((L − T)/T, ±max_gap)) after every architecture step, clamped to [low, high]."""

    value: float = 0.1
    rate: float = 0.5
    low: float = 1e-4
    high: float = 1e3
    max_gap: float = 0.2
    two_sided: bool = False
    start: float | None = None  # λ₀, the scale of a two-sided step near zero (default: the first value)

    def __post_init__(self) -> None:
        self.start = self.value if self.start is None else self.start

    def update(self, latency: float, target: float) -> float:
        gap = min(self.max_gap, max(-self.max_gap, (latency - target) / target))
        if self.two_sided:
            step = self.rate * gap * max(abs(self.value), self.start)
            self.value = min(self.high, max(-self.high, self.value + step))
        else:
            self.value = min(self.high, max(self.low, self.value * math.exp(self.rate * gap)))
        return self.value
