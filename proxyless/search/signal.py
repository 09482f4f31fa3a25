"""How much of α's path was signal: the drift of the cross-entropy's α gradient against its noise.

A gradient architecture step moves each logit by about the step size in the direction of that step's
gradient (Adam with β1 = 0). Over T steps a steady drift adds up to T · mean, noise to √T · std, so

    z = √T · |mean| / std        per logit, over the steps the search took

says whether α could follow the accuracy signal: z of 2 or more, a drift; about 1 or less, a random walk,
and the derived net is close to a draw from the latency band. `benchmarks/alpha_signal.py` measures the
same on a finished supernet (2026-12-05: median z 1.0 over the 150 steps a family's α got).

Only the cross-entropy's part is counted (`GradientStrategy` records it before the latency term is added):
a latency term's steady push would otherwise read as a signal about accuracy. Under torchrun it is the
whole batch's gradient (the mean over the processes' shares).
"""

from __future__ import annotations

import statistics

import torch

# below this median z, α mostly followed noise (see the module docstring)
CLEAR_SIGNAL = 2.0


class GradientSignal:
    """Running sums of the α gradients of a search, per logit; `median_z()` over all logits."""

    def __init__(self) -> None:
        self.steps = 0
        self.sums: list[torch.Tensor] = []
        self.squares: list[torch.Tensor] = []

    def add(self, grads: list[torch.Tensor]) -> None:
        """One step's gradient, a tensor per layer."""
        grads = [g.detach().double().cpu() for g in grads]
        if not self.sums:
            self.sums = [torch.zeros_like(g) for g in grads]
            self.squares = [torch.zeros_like(g) for g in grads]
        for total, square, g in zip(self.sums, self.squares, grads):
            total += g
            square += g * g
        self.steps += 1

    def z(self) -> list[torch.Tensor]:
        """Per layer, √T · |mean| / std of each logit's gradient over the T steps so far."""
        z = []
        for total, square in zip(self.sums, self.squares):
            mean = total / self.steps
            std = (square / self.steps - mean**2).clamp_min(1e-30).sqrt()
            z.append(self.steps**0.5 * mean.abs() / std)
        return z

    def median_z(self) -> float | None:
        """The median z over all logits; None before two steps."""
        if self.steps < 2:
            return None
        return statistics.median(float(v) for layer in self.z() for v in layer)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "sums": self.sums, "squares": self.squares}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.sums, self.squares = state["steps"], list(state["sums"]), list(state["squares"])
