"""The latency flags of `proxyless search`: a table, a target, and the report on the derived network."""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from proxyless.arch import Arch
from proxyless.infra.atomic import atomic_write_text
from proxyless.errors import UserError
from proxyless.latency.loss import KINDS, LatencyLoss
from proxyless.latency.lut import Stat, load_lut
from proxyless.latency.measure import measure_archs
from proxyless.latency.predict import LatencyModel
from proxyless.latency.runners import BACKENDS, BackendUnavailable, check_backend
from proxyless.latency.validate import network_config
from proxyless.search.measured_derive import MeasuredDerive, derive_measured
from proxyless.search.objective import TOLERANCE, LatencyObjective, LatencyReward
from proxyless.search.supernet import SuperNet
from proxyless.space import SearchSpace

log = logging.getLogger("proxyless")


def add_latency_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("latency (hardware-aware search)")
    group.add_argument("--lut", help="latency table of the target device (`proxyless lut build`, or mobile .yaml)")
    group.add_argument("--target-latency", help="target latency of the searched net, e.g. 12ms (needs --lut)")
    group.add_argument("--latency-loss", choices=KINDS, default="add",
                       help="add: CE + λ(E/T−1); mul: CE·(E/T)^λ; log: log CE + λ log(E/T); hinge: CE + λ max(0, E/T−1)")
    group.add_argument("--latency-weight", type=float, default=0.1, help="initial λ (adapted during the search)")
    group.add_argument("--latency-adapt-rate", type=float, default=0.5,
                       help="λ ← λ·exp(rate·clip((L−T)/T, ±0.2)) after each arch step, L the derived net's latency (0: fixed λ)")
    group.add_argument("--reward-latency", choices=("predicted", "measured"), default="predicted",
                       help="reinforce: the latency in the reward, from the table or timed on this machine")
    group.add_argument("--no-measure", action="store_true", help="do not time the derived net after the search")
    add_measured_derive_flag(group)


def add_measured_derive_flag(parser) -> None:
    parser.add_argument("--measured-derive", action="store_true",
                        help="time the derived net on this machine and, when it is more than 2.5%% off the target, "
                             "correct the table by that measurement and derive again (up to 3 nets)")


def parse_target(text: str) -> float:
    """'12ms', '12 ms' or '12' -> 12.0 (milliseconds)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms)?\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--target-latency must be a positive number of milliseconds such as 12ms, got {text!r}")
    return float(match.group(1))


def latency_objective(args: argparse.Namespace, supernet: SuperNet, space: SearchSpace) -> LatencyObjective | None:
    """The objective for `--lut/--target-latency` over `space` (the deployed net's space), or None."""
    if args.lut is None and args.target_latency is None:
        return None
    if args.lut is None or args.target_latency is None:
        raise UserError("--lut and --target-latency go together: the table predicts, the target says how fast")
    if args.latency_weight <= 0 or args.latency_adapt_rate < 0:
        raise UserError("--latency-weight must be positive and --latency-adapt-rate not negative")
    model = LatencyModel(space, load_lut(args.lut))
    loss = LatencyLoss(args.latency_loss, parse_target(args.target_latency), args.latency_weight)
    fastest, slowest = reachable(model)
    if not fastest * (1 - TOLERANCE) <= loss.target <= slowest * (1 + TOLERANCE):
        raise UserError(f"--target-latency {loss.target:g}ms is out of reach: on this table the nets of {space.name} "
                        f"take {fastest:.2f} to {slowest:.2f} ms; choose a target in that range")
    measured = _measured_latency(model, args) if args.reward_latency == "measured" else None
    if getattr(args, "measured_derive", False):
        if getattr(args, "no_measure", False):
            raise UserError("--measured-derive times the derived net; it cannot go with --no-measure")
        _local_backend(model.header, "--measured-derive times nets on this machine; derive from the table alone")
    return LatencyObjective(supernet, model, loss, args.latency_adapt_rate, reward_latency=measured)


def reward_for(objective: LatencyObjective | None) -> LatencyReward | None:
    return None if objective is None else LatencyReward(objective)


def reachable(model: LatencyModel) -> tuple[float, float]:
    """Predicted latency of the fastest and of the slowest architecture."""
    return (model.of_indices([int(lat.argmin()) for lat in model.per_layer]),
            model.of_indices([int(lat.argmax()) for lat in model.per_layer]))


def derive_on_device(objective: LatencyObjective, supernet: SuperNet) -> MeasuredDerive:
    """`derive_measured` with nets timed on the table's backend, batch and threads (this machine)."""
    backend = _local_backend(objective.model.header, "--measured-derive times nets on this machine")
    config = network_config(objective.model.header, max_rounds=15)

    def measure(indices: list[int]) -> Stat:
        deployed = Arch(objective.model.space, supernet.arch_of(indices).ops)
        (stat,) = measure_archs([deployed], backend, config, progress=False)
        print(f"latency: derived net measured {stat.mean:.2f} ms, predicted {objective.model.of_arch(deployed):.2f} ms "
              f"(target {objective.target:g} ms)")
        return stat

    result = derive_measured(objective, supernet, measure)
    result.kept["backend"] = backend
    return result


def report_latency(objective: LatencyObjective, arch: Arch, derived_by: str, argmax_ms: float, run_dir: Path,
                   measure: bool, measured: MeasuredDerive | None = None) -> dict[str, Any]:
    """Predicted (and, when possible, measured) latency of the derived `arch` vs the target -> latency.json;
    `measured`: the derive already timed it (`--measured-derive`)."""
    deployed = Arch(objective.model.space, arch.ops, arch.name)  # the table's task (its classes), the searched ops
    predicted, target = objective.model.of_arch(deployed), objective.target
    on_target = objective.on_target(predicted)
    result: dict[str, Any] = {"target_ms": target, "predicted_ms": predicted, "loss": objective.loss.kind,
                              "error": predicted / target - 1, "on_target": on_target, "derived_by": derived_by,
                              "argmax_predicted_ms": argmax_ms, "final_latency_weight": objective.weight.value}
    band = "at most the target" if objective.loss.kind == "hinge" else f"within ±{TOLERANCE:.0%}"
    print(f"latency: predicted {predicted:.2f} ms for a target of {target:g} ms ({predicted / target - 1:+.1%}; "
          f"{'on target' if on_target else 'MISSED'}: {band}); derived by {derived_by}; "
          f"the argmax would take {argmax_ms:.2f} ms")
    if measured is not None:
        result.update({k: measured.kept[k] for k in ("measured_ms", "measured_std_ms", "backend", "table_scale")},
                      measured_derive=measured.trail)
        print(f"latency: measured {measured.kept['measured_ms']:.2f} ms "
              f"({measured.kept['measured_ms'] / target - 1:+.1%} of the target; {len(measured.trail)} net(s) timed)")
    elif measure:
        result.update(_measure(deployed, objective))
    atomic_write_text(run_dir / "latency.json", json.dumps(result, indent=2) + "\n")
    return result


def _measure(arch: Arch, objective: LatencyObjective) -> dict[str, Any]:
    try:
        backend = _local_backend(objective.model.header, "time the net there (`proxyless latency measure` on that device)")
    except UserError as err:
        print(f"latency: not measured here: {err}")
        return {"measured_ms": None, "not_measured": str(err)}
    config = network_config(objective.model.header, max_rounds=15)
    (stat,) = measure_archs([arch], backend, config, progress=False)
    print(f"latency: measured {stat.mean:.2f} ± {stat.var ** 0.5:.2f} ms ({backend}, batch {config.batch}, "
          f"{stat.count} rounds)")
    return {"measured_ms": stat.mean, "measured_std_ms": stat.var**0.5, "backend": backend}


def _measured_latency(model: LatencyModel, args: argparse.Namespace):
    """REINFORCE with measured latency: time each sampled net on the table's backend (cached by ops)."""
    backend = _local_backend(model.header, "--reward-latency measured times nets on this machine; "
                                           "use --reward-latency predicted")
    config = network_config(model.header, min_rounds=3, max_rounds=3)
    cache: dict[tuple, float] = {}

    def latency(arch: Arch) -> float:
        if arch.ops not in cache:
            deployed = Arch(model.space, arch.ops)
            cache[arch.ops] = measure_archs([deployed], backend, config, progress=False)[0].mean
        return cache[arch.ops]

    return latency


def _local_backend(header: dict, fix: str) -> str:
    """The table's backend when this machine can time networks on it; else a one-line error ending in `fix`."""
    backend = header["backend"]
    if backend not in BACKENDS:
        raise BackendUnavailable(f"the table was measured on {header.get('device', backend)}; {fix}")
    check_backend(backend)
    return backend
