"""Deriving against the device: correct the table by measurement until the kept net is on target.

A calibrated table predicts whole networks to a few percent (`proxyless lut validate`), but its error
is not the same everywhere in the space: a searched net with many `zero` layers is predicted less
well than the random nets the table was calibrated on. Picked at the edge of the ±2.5% derive band,
such a net can measure more than 5% off the target.

`derive_measured` times the derived net on the device. When it is off the target by more than
`DERIVE_BAND`, the table's predictions are scaled by measured / predicted of that net (the table's
error near it) and the net is derived again, up to `tries` nets; of the nets timed, the one measured
closest to the target is kept.

    result = derive_measured(objective, supernet, measure=time_indices)
    result.indices, result.how, result.kept["measured_ms"], result.trail
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxyless.latency.lut import Stat
from proxyless.search.objective import DERIVE_BAND, LatencyObjective
from proxyless.search.supernet import SuperNet

Measure = Callable[[list[int]], Stat]  # the measured latency (ms) of the net with these candidate indices


@dataclass
class MeasuredDerive:
    indices: list[int]  # the net kept
    how: str  # how it was chosen
    kept: dict[str, Any]  # its record: predicted_ms, table_scale, measured_ms, measured_std_ms
    trail: list[dict[str, Any]]  # the record of every net timed, in order


def derive_measured(objective: LatencyObjective, supernet: SuperNet, measure: Measure,
                    tries: int = 3) -> MeasuredDerive:
    """Derive, time, and derive again with the table corrected, until a net is measured on target."""
    target, scale = objective.target, 1.0
    timed: list[tuple[list[int], str, dict[str, Any]]] = []
    for _ in range(tries):
        indices, how = objective.derive(supernet, scale)
        if any(indices == seen for seen, _, _ in timed):  # the correction leads back to a net already timed
            break
        stat, predicted = measure(indices), objective.model.of_indices(indices)
        timed.append((indices, how, {"predicted_ms": predicted, "table_scale": scale, "measured_ms": stat.mean,
                                     "measured_std_ms": stat.var**0.5}))
        if _close_enough(objective, stat.mean):
            break
        scale = stat.mean / predicted
    indices, how, record = min(timed, key=lambda t: (not objective.on_target(t[2]["measured_ms"]),
                                                   abs(t[2]["measured_ms"] - target)))
    if record["table_scale"] != 1.0:
        how += f"; table corrected ×{record['table_scale']:.3f} by measuring the net derived before"
    return MeasuredDerive(indices, how, record, [r for _, _, r in timed])


def _close_enough(objective: LatencyObjective, measured: float) -> bool:
    """Within the derive band (hinge: at most the target); no need to correct the table."""
    if objective.loss.kind == "hinge":
        return measured <= objective.target
    return abs(measured / objective.target - 1) <= DERIVE_BAND
