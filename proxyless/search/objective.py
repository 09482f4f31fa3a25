"""The latency objective of a hardware-aware search: a latency model, a target T, a loss form and a
weight that adapts itself, so that the derived architecture lands at T without hand-tuning.

    objective = LatencyObjective(supernet, LatencyModel(space, lut), LatencyLoss("add", target=12.0))
    GradientStrategy(supernet, arch_loss=objective)        # objective(supernet, ce) -> architecture loss
    ReinforceStrategy(supernet, reward=LatencyReward(objective))   # ACC · (LAT/T)^(−λ) while LAT > T

After every architecture step the weight λ is multiplied by exp(rate · clip((L − T)/T, ±0.2)), L the
predicted latency of the architecture the search would derive *now* (the argmax of α), not E[LAT]:
the argmax is what `derive` keeps, and its latency is what must hit the target.

`derive` keeps the argmax when its predicted latency is within ±5% of T (hinge: at most T); otherwise
it keeps the most probable architecture inside that band (see `budget`), and says which it did. With
`deepest` it keeps, of the nets in the band, those that give up the fewest blocks (a zero, or a skip at
any stride: `MixedOp.is_skip`), and of them the most probable: α still chooses every op, but never a
layer's removal over a layer (benchmarks/derive_rules.py: on NAS-Bench-Macro α kept more skips than the
band's average net, and the truth charged for each).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from proxyless.arch import Arch
from proxyless.latency.loss import AdaptiveWeight, LatencyLoss
from proxyless.latency.predict import LatencyModel
from proxyless.search.budget import most_probable_within
from proxyless.search.supernet import SuperNet

TOLERANCE = 0.05  # the derived net's predicted latency must be within ±5% of the target
# When the argmax is off target, the most probable net is looked for within half that band, so that
# the latency model's own error (a few %, see `lut validate`) still leaves the measured net within ±5%.
DERIVE_BAND = TOLERANCE / 2
DEPTH_BONUS = 1e4  # per kept layer, over any difference of Σ log p (each log p ≥ log 1e-30 ≈ −69)

ArchLatency = Callable[[Arch], float]  # ms of a whole architecture: predicted, or measured for REINFORCE


class LatencyObjective:
    def __init__(self, supernet: SuperNet, model: LatencyModel, loss: LatencyLoss, adapt_rate: float = 0.5,
                 reward_latency: ArchLatency | None = None, two_sided: bool = False, deepest: bool = False) -> None:
        self.supernet, self.model, self.loss, self.deepest = supernet, model, loss, deepest
        self.weight = AdaptiveWeight(loss.weight, rate=adapt_rate, low=loss.weight / 100, high=loss.weight * 1e4,
                                     two_sided=two_sided and loss.kind != "hinge")  # hinge never rewards latency
        self.reward_latency = reward_latency or model.of_arch
        self.last: dict[str, float] = {}

    @property
    def target(self) -> float:
        return self.loss.target

    def __call__(self, supernet: SuperNet, ce: torch.Tensor) -> torch.Tensor:
        """The architecture loss of a gradient step (E[LAT] differentiable in α); then adapt λ."""
        expected = self.model.expected(supernet.arch_parameters()).to(ce.dtype)
        loss = self.loss.combine(ce, expected, self.weight.value)
        self._adapt(expected=float(expected.detach()))
        return loss

    def reward(self, arch: Arch, accuracy: float) -> float:
        """ACC · (LAT/T)^(−λ) when LAT > T (only a slow net is discounted), for REINFORCE; then adapt λ."""
        latency = self.reward_latency(arch)
        factor = (latency / self.target) ** -self.weight.value if latency > self.target else 1.0
        self.last["sampled_latency_ms"] = latency
        self._adapt()
        return accuracy * factor

    def on_target(self, latency: float) -> bool:
        if self.loss.kind == "hinge":
            return latency <= self.target
        return abs(latency - self.target) <= TOLERANCE * self.target

    def derive(self, supernet: SuperNet, scale: float = 1.0) -> tuple[list[int], str]:
        """The indices to keep, and how they were chosen; `scale` corrects the table's predictions
        (measured / predicted near the net, see `search.measured_derive`)."""
        argmax = supernet.argmax()
        if not self.deepest and self.on_target(scale * self.model.of_indices(argmax)):
            return argmax, "argmax"
        low, high = self.derive_band(scale)
        inside = most_probable_within(self.model, supernet.probs(), low, high, self.depth_bonus(supernet))
        if inside is not None and self.on_target(scale * self.model.of_indices(inside)):
            if self.deepest:
                return inside, "the deepest architectures within the target band, the most probable of them"
            return inside, "most probable architecture within the target band (the argmax was off target)"
        return argmax, "argmax (no architecture of the space is within the target band)"

    def depth_bonus(self, supernet: SuperNet) -> list[np.ndarray] | None:
        """With `deepest`, DEPTH_BONUS for each candidate that keeps its layer's block (not `is_skip`), per layer,
        so that the band's dynamic programme ranks depth first; None otherwise."""
        if not self.deepest:
            return None
        return [np.array([0.0 if mixed.is_skip(i) else DEPTH_BONUS for i in range(len(mixed.specs))])
                for mixed in supernet.mixed_ops()]

    def derive_band(self, scale: float = 1.0) -> tuple[float, float]:
        """The (low, high) predicted ms a net off the argmax is looked for in: ±DERIVE_BAND around the target
        (hinge: up to it), slightly narrower than on_target's, as the dynamic programme rounds latencies to
        its bins; `scale` as in `derive`."""
        low = 0.0 if self.loss.kind == "hinge" else self.target * (1 - DERIVE_BAND)
        high = self.target if self.loss.kind == "hinge" else self.target * (1 + DERIVE_BAND)
        return low / scale, high / scale

    def _adapt(self, expected: float | None = None) -> None:
        derived = self.model.of_indices(self.supernet.argmax())
        self.last.update(argmax_latency_ms=derived, latency_weight=self.weight.value)
        if expected is not None:
            self.last["expected_latency_ms"] = expected
        self.weight.update(derived, self.target)

    def state_dict(self) -> dict:
        return {"weight": self.weight.value}

    def load_state_dict(self, state: dict) -> None:
        self.weight.value = float(state["weight"])


class LatencyReward:
    """`objective.reward` as a REINFORCE reward that also reports and checkpoints the objective's state."""

    def __init__(self, objective: LatencyObjective) -> None:
        self.objective = objective

    def __call__(self, arch: Arch, accuracy: float) -> float:
        return self.objective.reward(arch, accuracy)

    @property
    def last(self) -> dict[str, float]:
        return self.objective.last

    def state_dict(self) -> dict:
        return self.objective.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.objective.load_state_dict(state)
