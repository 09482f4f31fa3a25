"""A hardware-aware search: the latency target as a config, the objective built from it, and the
report on the derived network (predicted and, where this machine can time it, measured latency).

    target = LatencyTarget(lut="lut_cifar.json", target_ms=40)
    objective = latency_objective(target, supernet, space)   # the strategies' arch loss / reward
    report = latency_report(objective, arch, "argmax", measure=True)   # -> latency.json
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from proxyless.arch import Arch
from proxyless.arch_kinds import AnyArch, AnySpace, on_space
from proxyless.errors import UserError, check_field_types
from proxyless.latency.loss import KINDS, LatencyLoss
from proxyless.latency.lut import LatencyTable, Stat, load_lut
from proxyless.latency.measure import Reference, measure_archs, reference_arch
from proxyless.latency.predict import LatencyModel, reachable
from proxyless.latency.runners import BACKENDS, BackendUnavailable, check_backend
from proxyless.latency.validate import network_config
from proxyless.search.measured_derive import MeasuredDerive, derive_measured
from proxyless.search.objective import TOLERANCE, LatencyObjective, LatencyReward
from proxyless.search.supernet import SuperNet

CONTROLLERS = ("one-sided", "two-sided")
DERIVE_DEPTHS = ("alpha", "deepest")


@dataclass(frozen=True)
class LatencyTarget:
    """What a hardware-aware search aims at: a table of the target device and a latency in ms."""

    lut: str  # a table from `proxyless lut build`, or the published mobile .yaml
    target_ms: float
    loss: str = "add"  # add | mul | log | hinge (see proxyless.latency.loss)
    weight: float = 0.1  # the initial λ, adapted during the search
    adapt_rate: float = 0.5  # λ ← λ·exp(rate·clip((L−T)/T, ±0.2)) after each arch step; 0: fixed λ
    controller: str = "one-sided"  # or "two-sided": λ may turn negative to push a too-fast net up (loss.py)
    reward_latency: str = "predicted"  # reinforce: the latency in the reward, "predicted" or "measured"
    measure: bool = True  # time the derived net on this machine after the search
    measured_derive: bool = False  # correct the table by timing the derived net, and derive again
    derive_top: int = 0  # >0: keep the best, by the supernet's valid top-1, of this many most probable nets in
    #                      the target band and the latency rule's pick (`search.scored_derive`); 0: the rule alone
    derive_depth: str = "alpha"  # or "deepest": of the band's nets those with the most layers, then by α

    def __post_init__(self) -> None:
        check_field_types(self)
        if not self.target_ms > 0:
            raise UserError(f"--target-latency must be a positive number of milliseconds, got {self.target_ms}")
        if self.loss not in KINDS:
            raise UserError(f"--latency-loss must be one of {', '.join(KINDS)}, got {self.loss!r}")
        if self.weight <= 0 or self.adapt_rate < 0:
            raise UserError("--latency-weight must be positive and --latency-adapt-rate not negative")
        if self.controller not in CONTROLLERS:
            raise UserError(f"--latency-controller must be {' or '.join(CONTROLLERS)}, got {self.controller!r}")
        if self.reward_latency not in ("predicted", "measured"):
            raise UserError(f"--reward-latency must be predicted or measured, got {self.reward_latency!r}")
        if self.derive_depth not in DERIVE_DEPTHS:
            raise UserError(f"--derive-depth must be {' or '.join(DERIVE_DEPTHS)}, got {self.derive_depth!r}")
        if self.derive_top < 0:
            raise UserError(f"--derive-top must be 0 (off) or a number of nets, got {self.derive_top}")
        if self.measured_derive and not self.measure:
            raise UserError("--measured-derive times the derived net; it cannot go with --no-measure")


def parse_target(text: str) -> float:
    """'12ms', '12 ms' or '12' -> 12.0 (milliseconds)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms)?\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--target-latency must be a positive number of milliseconds such as 12ms, got {text!r}")
    return float(match.group(1))


def latency_objective(target: LatencyTarget, supernet: SuperNet, space: AnySpace) -> LatencyObjective:
    """The objective for `target` over `space` (the deployed net's space: the data may change the supernet's
    classes, not the latency); refuses a target out of the table's reach."""
    model = LatencyModel(space, load_lut(target.lut))
    loss = LatencyLoss(target.loss, target.target_ms, target.weight)
    fastest, slowest = reachable(model)
    if not fastest * (1 - TOLERANCE) <= loss.target <= slowest * (1 + TOLERANCE):
        raise UserError(f"--target-latency {loss.target:g}ms is out of reach: on this table the nets of {space.name} "
                        f"take {fastest:.2f} to {slowest:.2f} ms; choose a target in that range")
    measured = _measured_latency(model) if target.reward_latency == "measured" else None
    if target.measured_derive:
        _local_backend(model.header, "--measured-derive times nets on this machine; derive from the table alone")
    return LatencyObjective(supernet, model, loss, target.adapt_rate, reward_latency=measured,
                            two_sided=target.controller == "two-sided", deepest=target.derive_depth == "deepest")


def reward_for(objective: LatencyObjective | None) -> LatencyReward | None:
    return None if objective is None else LatencyReward(objective)


def latency_range(space: AnySpace, lut: LatencyTable | str) -> tuple[float, float]:
    """Predicted latency (ms) of the fastest and of the slowest net of `space` on the table `lut`: the
    targets a search can reach."""
    return reachable(LatencyModel(space, load_lut(lut) if isinstance(lut, str) else lut))



def derive_on_device(objective: LatencyObjective, supernet: SuperNet) -> MeasuredDerive:
    """`derive_measured` with nets timed on the table's backend, batch and threads (this machine)."""
    backend = _local_backend(objective.model.header, "--measured-derive times nets on this machine")
    config = network_config(objective.model.header, max_rounds=15)
    reference = Reference(reference_arch(objective.model.space), backend, config)  # one scale for every net it compares

    def measure(indices: list[int]) -> Stat:
        deployed = on_space(supernet.arch_of(indices), objective.model.space)
        (stat,) = measure_archs([deployed], backend, config, progress=False, reference=reference)
        return stat

    result = derive_measured(objective, supernet, measure)
    result.kept["backend"] = backend
    return result


def latency_report(objective: LatencyObjective, arch: AnyArch, derived_by: str, argmax_ms: float, measure: bool,
                   measured: MeasuredDerive | None = None,
                   timer: Callable[[Arch, LatencyObjective], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Predicted (and, when possible, measured) latency of the derived `arch` against the target, as
    latency.json holds it; `measured`: the derive already timed it (`measured_derive`); `timer` times a net
    (default: on this machine, on the table's backend).

    `on_target` judges the measurement where there is one (`on_target_by` says which), as the measured
    net is the one the user deploys; `predicted_on_target` keeps the table's verdict beside it.
    """
    deployed = on_space(arch, objective.model.space)  # the table's task (its classes), the searched ops
    predicted, target = objective.model.of_arch(deployed), objective.target
    report: dict[str, Any] = {"target_ms": target, "predicted_ms": predicted, "loss": objective.loss.kind,
                              "error": predicted / target - 1, "derived_by": derived_by,
                              "argmax_predicted_ms": argmax_ms, "final_latency_weight": objective.weight.value}
    if measured is not None:
        report.update({k: measured.kept[k] for k in ("measured_ms", "measured_std_ms", "backend", "table_scale")},
                      measured_derive=measured.trail)
    elif measure:
        report.update((timer or _measure)(deployed, objective))
    return judged(report, objective)


def judged(report: dict[str, Any], objective: LatencyObjective) -> dict[str, Any]:
    """`report` with `on_target` taken from its measurement when it has one, else from the prediction."""
    predicted_on_target = objective.on_target(report["predicted_ms"])
    measured = report.get("measured_ms")
    if measured is None:
        return {**report, "on_target": predicted_on_target, "on_target_by": "predicted"}
    return {**report, "on_target": objective.on_target(measured), "on_target_by": "measured",
            "predicted_on_target": predicted_on_target, "measured_error": measured / objective.target - 1}


def describe_latency(report: dict[str, Any]) -> list[str]:
    """The lines a user reads about a latency report."""
    target, predicted = report["target_ms"], report["predicted_ms"]
    band = "at most the target" if report["loss"] == "hinge" else f"within ±{TOLERANCE:.0%}"
    if report.get("on_target_by") == "measured":  # the measurement judges; the table's verdict is a hint
        verdict = "the table says on target" if report["predicted_on_target"] else "the table says off target"
    else:
        verdict = "on target" if report["on_target"] else "MISSED"
    lines = [f"latency: predicted {predicted:.2f} ms for a target of {target:g} ms ({report['error']:+.1%}; "
             f"{verdict}: {band}); derived by {report['derived_by']}; "
             f"the argmax would take {report['argmax_predicted_ms']:.2f} ms"]
    if "measured_derive" in report:
        lines += [f"latency: derived net measured {net['measured_ms']:.2f} ms, predicted {net['predicted_ms']:.2f} ms "
                  f"(table ×{net['table_scale']:.3g}, target {target:g} ms)" for net in report["measured_derive"]]
        lines.append(f"latency: measured {report['measured_ms']:.2f} ms ({report['measured_ms'] / target - 1:+.1%} "
                     f"of the target; {len(report['measured_derive'])} net(s) timed)")
    elif report.get("not_measured"):
        lines.append(f"latency: not measured here: {report['not_measured']}")
    elif report.get("measured_ms") is not None:
        lines.append(f"latency: measured {report['measured_ms']:.2f} ± {report['measured_std_ms']:.2f} ms "
                     f"({report['backend']}, batch {report['batch']}, {report['rounds']} rounds)")
    if report.get("on_target_by") == "measured" and not report["on_target"]:
        lines.append(f"latency: MISSED as measured: {report['measured_ms']:.2f} ms is {report['measured_error']:+.1%} "
                     f"of the target ({band}) where the table predicted {report['error']:+.1%}; the table does not "
                     "match this device: correct it by measurement with `proxyless derive RUN_DIR --measured-derive` "
                     "(or search with --measured-derive), or rebuild and calibrate it (`proxyless lut`)")
    return lines


def _measure(arch: Arch, objective: LatencyObjective) -> dict[str, Any]:
    try:
        backend = _local_backend(objective.model.header,
                                 "time the net there (`proxyless latency measure` on that device)")
    except UserError as err:
        return {"measured_ms": None, "not_measured": str(err)}
    config = network_config(objective.model.header, max_rounds=15)
    (stat,) = measure_archs([arch], backend, config, progress=False)
    return {"measured_ms": stat.mean, "measured_std_ms": stat.var**0.5, "backend": backend, "batch": config.batch,
            "rounds": stat.count}


def _measured_latency(model: LatencyModel) -> Callable[[Arch], float]:
    """REINFORCE with measured latency: time each sampled net on the table's backend (cached by ops)."""
    backend = _local_backend(model.header, "--reward-latency measured times nets on this machine; "
                                           "use --reward-latency predicted")
    config = network_config(model.header, min_rounds=3, max_rounds=3)
    reference = Reference(reference_arch(model.space), backend, config)  # rewards on one scale over the whole search
    cache: dict[AnyArch, float] = {}

    def latency(arch: AnyArch) -> float:
        deployed = on_space(replace(arch, name=""), model.space)
        if deployed not in cache:
            cache[deployed] = measure_archs([deployed], backend, config, progress=False, reference=reference)[0].mean
        return cache[deployed]

    return latency


def _local_backend(header: dict, fix: str) -> str:
    """The table's backend when this machine can time networks on it; else a one-line error ending in `fix`."""
    backend = header["backend"]
    if backend not in BACKENDS:
        raise BackendUnavailable(f"the table was measured on {header.get('device', backend)}; {fix}")
    check_backend(backend)
    return backend

