"""Latency of a fixed architecture, and the expected latency of a supernet (differentiable in α).

    predict_latency(arch, lut)      = Σ fixed parts + Σ_layers LAT(op_l)
    expected_latency(supernet, lut) = Σ fixed parts + Σ_layers Σ_k p_lk · LAT(op_lk),   p_l = softmax(α_l)

`zero` costs 0. A table may carry a linear calibration (`header["calibration"] = {"scale", "offset"}`),
applied to whole-network predictions: per-op sums miss per-call overhead and cache effects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from proxyless.arch import Arch
from proxyless.latency.keys import arch_keys, candidate_keys, fixed_keys
from proxyless.latency.lut import LatencyTable
from proxyless.space import SearchSpace
from proxyless.tree.arch import TreeArch


@dataclass(frozen=True)
class Calibration:
    scale: float = 1.0
    offset: float = 0.0  # ms

    def apply(self, raw):
        return raw * self.scale + self.offset


def calibration_of(lut: LatencyTable) -> Calibration:
    data = lut.header.get("calibration") or {}
    return Calibration(float(data.get("scale", 1.0)), float(data.get("offset", 0.0)))


def predict_latency(arch: Arch | TreeArch, lut: LatencyTable) -> float:
    """Predicted latency of `arch` (either kind) in ms (calibrated when the table carries a calibration)."""
    return calibration_of(lut).apply(sum(lut.latency(key) for key in arch_keys(arch, lut.context)))


class LatencyModel:
    """A table resolved against one space: fixed cost plus a latency vector per searchable layer."""

    def __init__(self, space: SearchSpace, lut: LatencyTable) -> None:
        lut.check_covers(space)
        context = lut.context
        self.space, self.header, self.calibration = space, lut.header, calibration_of(lut)
        self.fixed = sum(lut.latency(key) for key in fixed_keys(space, context))
        self.per_layer = [
            torch.tensor([0.0 if key is None else lut.latency(key) for key in layer], dtype=torch.float64)
            for layer in candidate_keys(space, context)
        ]

    def expected(self, alphas: list[torch.Tensor]) -> torch.Tensor:
        """E[LAT] under p = softmax(α) per layer; differentiable w.r.t. every α."""
        total = torch.zeros((), dtype=torch.float64, device=alphas[0].device)
        for alpha, lat in zip(alphas, self.per_layer):
            total = total + (torch.softmax(alpha.double(), 0) * lat.to(alpha.device)).sum()
        return self.calibration.apply(total + self.fixed)

    def of_arch(self, arch: Arch) -> float:
        """Predicted latency of `arch` (an architecture of this model's space)."""
        return self.of_indices(self.space.indices_of(arch))

    def of_indices(self, indices: list[int]) -> float:
        """Latency of the single-path architecture that picks `indices`."""
        return float(self.calibration.apply(self.fixed + sum(float(lat[i]) for lat, i in zip(self.per_layer, indices))))


def reachable(model: LatencyModel) -> tuple[float, float]:
    """Predicted latency of the fastest and of the slowest architecture."""
    return (model.of_indices([int(lat.argmin()) for lat in model.per_layer]),
            model.of_indices([int(lat.argmax()) for lat in model.per_layer]))


def expected_latency(supernet, lut: LatencyTable) -> torch.Tensor:
    """E[LAT] of a `SuperNet` in ms, differentiable in its α."""
    return LatencyModel(supernet.space, lut).expected(supernet.arch_parameters())
