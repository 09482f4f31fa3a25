"""A whole search as two library calls, what `proxyless search` and `proxyless derive` run:

    result = search_arch("proxyless-cifar", "sample", SearchConfig(epochs=4), out="runs/s",
                         latency=LatencyTarget(lut="lut.json", target_ms=40))
    result.arch, result.run_dir, result.latency        # the derived Arch, where it is, latency.json
    derive_from_run("runs/s", inherit=True)            # re-derive from the checkpoint
    family = search_family("proxyless-cifar", "sample", targets=[LatencyTarget("lut.json", t) for t in (30, 46)])
    [member.arch for member in family]                 # one net per target from one supernet (runs/s/30ms, ...)

A run directory holds config.json (the settings: search config, space, data, latency target),
checkpoint.pt, metrics, arch_history.jsonl, and at the end arch.json, result.json and latency.json. A family's
run directory holds one subdirectory per target (30ms/, 46ms/) with its arch_history.jsonl, arch.json,
result.json and latency.json.
`search_arch(..., resume=True)` continues it under the resume contract of `proxyless.infra.settings`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from proxyless.arch import save_arch
from proxyless.arch_kinds import AnyArch, AnySpace, any_space_from_dict, get_any_space, on_space
from proxyless.data import Splits, check_limit, limit_train, load_splits
from proxyless.errors import UserError
from proxyless.infra.atomic import atomic_write_text, read_json
from proxyless.infra.checkpoint import load_checkpoint, save_weights
from proxyless.infra.device import resolve_device
from proxyless.infra.distributed import Dist
from proxyless.infra.settings import open_run
from proxyless.net import build_net
from proxyless.search.derive import argmax_rule, inherit_weights
from proxyless.search.family import Arm, target_label, use, write_listing
from proxyless.search.hardware import (
    LatencyTarget,
    derive_on_device,
    judged,
    latency_objective,
    latency_report,
    reward_for,
)
from proxyless.search.loop import Derive, SearchConfig, Searcher, arch_turns, weights_of, with_arch_budget
from proxyless.search.objective import LatencyObjective
from proxyless.search.scored_derive import DERIVE_IMAGES, scored_derive
from proxyless.search.scoring import fixed_subset
from proxyless.search.strategies import ArchStrategy, GradientStrategy, ReinforceStrategy
from proxyless.search.supernet import SuperNet
from proxyless.tree.space import TreeSpace
from proxyless.tree.supernet import TreeSuperNet, inherit_tree_weights

log = logging.getLogger("proxyless")


@dataclass(frozen=True)
class SearchResult:
    arch: AnyArch  # the derived architecture (also run_dir/arch.json): an Arch, or a TreeArch of a tree space
    run_dir: Path
    derived_by: str  # which rule kept it: "argmax", or the latency band's
    latency: dict[str, Any] | None  # latency.json: predicted (and measured) vs the target; None without one

    @property
    def arch_json(self) -> Path:
        return self.run_dir / "arch.json"


@dataclass(frozen=True)
class DeriveResult:
    arch: AnyArch
    arch_json: Path
    derived_by: str
    latency: dict[str, Any] | None  # the run's latency report, updated for this net
    weights: Path | None  # the kept paths' supernet weights, with `inherit_weights`


def load_search_data(source: str, image_size: int, valid_size: float = 0.2, limit_images: int | None = None,
                     seed: int = 0, progress: bool = True) -> Splits:
    """`load_splits` with a held-out valid split for α, and optionally only `limit_images` training images."""
    if not 0 < valid_size < 1:
        raise UserError(f"--valid-size must be a fraction in (0, 1), got {valid_size}")
    check_limit(limit_images)  # before the decode of a large folder
    splits = load_splits(source, image_size, valid_size=valid_size, seed=seed, progress=progress)
    return limit_train(splits, limit_images, seed)


def search_arch(space: AnySpace | str = "proxyless-cifar", data: Splits | str = "sample",
                config: SearchConfig | None = None, *, latency: LatencyTarget | None = None,
                out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                device: str = "cpu", dist: Dist | None = None, command: dict[str, Any] | None = None,
                ) -> SearchResult:
    """Search `space` (a preset name, a file, a SearchSpace or a tree-cell TreeSpace) on `data` (a source for
    `load_search_data` or Splits with a valid split) and derive an architecture; with `latency`, for a target
    latency.

    `out` is the run directory (default runs/search-<space>); `resume=True` continues it, its saved settings
    winning (a different one is refused, except more epochs and the like: `proxyless.infra.settings`).
    Under torchrun pass `Dist.from_env(...)` as `dist`; only rank 0 writes files. `command`: the flags of
    the command line that started it, saved with the settings (the CLI resumes from them).
    """
    return _search(space, data, config, [latency] if latency else [], out, resume, overwrite, device, dist,
                   command)[0]


def search_family(space: AnySpace | str = "proxyless-cifar", data: Splits | str = "sample",
                  config: SearchConfig | None = None, *, targets: Sequence[LatencyTarget],
                  out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                  device: str = "cpu", dist: Dist | None = None, command: dict[str, Any] | None = None,
                  ) -> list[SearchResult]:
    """One search for several latency targets (`proxyless.search.family`): the supernet's weights trained
    once, one α per target; returns one result per target, in the order given, each in its subdirectory
    of the run (RUN/46ms/arch.json). Arguments as `search_arch`'s."""
    if len(targets) < 2:
        raise UserError("a family needs two or more latency targets; for one, use search_arch")
    labels = [target_label(t.target_ms) for t in targets]
    if len(set(labels)) < len(labels):
        raise UserError(f"--target-latency: each target once, got {' '.join(labels)}")
    return _search(space, data, config, list(targets), out, resume, overwrite, device, dist, command)


def _search(space: AnySpace | str, data: Splits | str, config: SearchConfig | None, targets: list[LatencyTarget],
            out: str | Path | None, resume: bool, overwrite: bool, device: str, dist: Dist | None,
            command: dict[str, Any] | None) -> list[SearchResult]:
    """search_arch (no target or one) and search_family (two or more)."""
    config = config or SearchConfig()
    deployed = get_any_space(space) if isinstance(space, str) else space  # latency is predicted for this one
    if isinstance(data, str):
        data = load_search_data(data, deployed.input_size, seed=config.seed, progress=config.progress)
    if data.valid is None:
        raise UserError("a search needs a valid split to train α on; load the data with a valid_size")
    fitted = deployed
    if len(data.classes) != deployed.num_classes:
        log.info("space %s: classifier set to the data's %d classes", deployed.name, len(data.classes))
        fitted = replace(deployed, num_classes=len(data.classes))
    saved_latency = [asdict(t) for t in targets] if len(targets) > 1 else asdict(targets[0]) if targets else None
    settings = {"search": asdict(config), "space": deployed.to_dict(), "data": data.source,
                "latency": saved_latency, **({"command": command} if command else {})}
    dist = dist or Dist(device=resolve_device(device))
    # α's step size and count for this budget; saved as given (None: scaled), so a resume may add epochs
    config = with_arch_budget(config, len(data.train), dist.world, arch_turns(config, len(targets)))
    torch.manual_seed(config.seed)
    supernet = make_supernet(fitted, config.weights == "entangled", config.residual_init)
    objectives = [latency_objective(t, supernet, deployed) for t in targets] or [None]
    arms = [Arm(target_label(t.target_ms) if len(targets) > 1 else "", make_strategy(supernet, config, o, dist),
                derive_rule(o, t.derive_top if t else 0, data.valid, config.seed) or argmax_rule)
            for t, o in zip(targets or [None], objectives)]
    searcher = Searcher(supernet, arms, data.train, data.valid, config, dist.device, dist=dist, source=data.source)
    # only now, with every setting checked, the run directory (a refused search leaves no trace)
    opened = dist.on_main(lambda: open_run(out, f"search-{deployed.name}", settings, resume, overwrite))
    found = searcher.run(opened.path, resume=resume, restored=opened.record_resume)
    results = []
    for member, target, objective in zip(found.get("members", [found]), targets or [None], objectives):
        run_dir = opened.path / member.get("label", "")
        arch, how, report = member["arch"], member["derived_by"], None
        if dist.main and objective is not None:  # the files and the latency report are rank 0's
            with use(supernet, arms, member.get("index", 0)):
                arch, how, report = _report_latency(supernet, objective, target, arch, how, run_dir)
        results.append(SearchResult(arch, run_dir, how, report))
    if len(results) > 1 and dist.main and any(t.measured_derive for t in targets):  # it may have kept other nets
        write_listing(opened.path, [{"label": r.run_dir.name, "arch_json": str(r.arch_json),
                                     "derived_by": r.derived_by} for r in results])
    return results


def _report_latency(supernet: SuperNet, objective: LatencyObjective, target: LatencyTarget, arch: AnyArch, how: str,
                    run_dir: Path) -> tuple[AnyArch, str, dict[str, Any]]:
    """Time the derived net (and with `measured_derive` derive again by measurement) and write latency.json;
    returns the net kept, how, and the report."""
    measured = derive_on_device(objective, supernet) if target.measured_derive else None
    if measured is not None:  # the table corrected by measurement: the kept net may differ from the search's
        arch, how = supernet.arch_of(measured.indices, name=arch.name), measured.how
        save_arch(arch, run_dir / "arch.json")
        record = {"arch": arch.op_strings(), "arch_json": str(run_dir / "arch.json"), "derived_by": how}
        atomic_write_text(run_dir / "result.json", json.dumps(record, indent=2) + "\n")
    argmax_ms = objective.model.of_indices(supernet.argmax())
    report = latency_report(objective, arch, how, argmax_ms, target.measure, measured)
    atomic_write_text(run_dir / "latency.json", json.dumps(report, indent=2) + "\n")
    return arch, how, report


def derive_rule(objective: LatencyObjective | None, derive_top: int, valid: Dataset, seed: int) -> Derive | None:
    """How a search keeps its net: the argmax (None: no latency target), the latency band rule, or with
    `derive_top` (`LatencyTarget`'s) the best of the band's most probable nets as the supernet scores them
    on DERIVE_IMAGES valid images (the same ones for the same seed)."""
    if objective is None:
        return None
    if not derive_top:
        return objective.derive
    batches = list(DataLoader(fixed_subset(valid, DERIVE_IMAGES, seed, stream=14), batch_size=100))
    return scored_derive(objective, batches, derive_top)


def make_strategy(supernet: SuperNet, config: SearchConfig, objective: LatencyObjective | None,
                  dist: Dist) -> ArchStrategy:
    if config.strategy == "reinforce":
        return ReinforceStrategy(supernet, reward=reward_for(objective), lr=config.arch_lr, dist=dist)
    return GradientStrategy(supernet, lr=config.arch_lr, mode=config.mode, arch_loss=objective, dist=dist)


def derive_from_run(run_dir: str | Path, *, out: str | Path | None = None, inherit: bool = False,
                    measured_derive: bool = False, member: str | None = None,
                    derive_depth: str | None = None) -> DeriveResult:
    """Derive the architecture of a search run from its checkpoint (path-level pruning), with the run's
    latency rule when it had a target; `out` (default RUN_DIR/arch.json), `inherit` also writes the kept
    paths' weights, `measured_derive` corrects the table by timing the derived net on this machine,
    `derive_depth` ("alpha" or "deepest", see `LatencyTarget`) overrides the search's own. A family's run
    needs `member`, the target to derive ('46ms'), and writes into RUN_DIR/46ms/."""
    search_dir = Path(run_dir)
    state = load_checkpoint(search_dir / "checkpoint.pt")
    if state.get("kind") != "search":
        raise UserError(f"{search_dir}/checkpoint.pt is not a search checkpoint; derive needs a `proxyless search` run")
    supernet = supernet_of(state, str(search_dir), member)
    objective, target = _saved_objective(search_dir, supernet, member, derive_depth)
    run_dir = search_dir / (member or "")  # where the member's files are
    if measured_derive and objective is None:
        raise UserError("--measured-derive needs a search with a latency target; "
                        f"{run_dir} had no --lut/--target-latency")
    if derive_depth and objective is None:
        raise UserError("--derive-depth chooses among the nets in a latency target's band; "
                        f"{run_dir} had no --lut/--target-latency")
    measured = derive_on_device(objective, supernet) if measured_derive else None
    indices, how = ((measured.indices, measured.how) if measured
                    else (objective.derive if objective else argmax_rule)(supernet))
    if target is not None and target.derive_top and not measured:
        how += " (the search scored the band's nets on its valid data, which derive does not load: the rule alone)"
    arch = supernet.arch_of(indices, name=f"searched-{search_dir.name}" + (f"-{member}" if member else ""))
    arch_json = Path(out) if out else run_dir / "arch.json"
    save_arch(arch, arch_json)
    report = None
    if objective is not None and out is None:  # the run's own arch.json changed: so does its latency report
        report = _updated_latency_report(run_dir, objective, supernet, arch, how, measured)
    weights = None
    if inherit:
        net = build_net(arch)
        (inherit_tree_weights if isinstance(supernet, TreeSuperNet) else inherit_weights)(supernet, net)
        weights = save_weights(net, run_dir / "derived_weights.safetensors")
    return DeriveResult(arch, arch_json, how, report, weights)


def make_supernet(space: AnySpace, entangled: bool = False, residual_init: float = 0.0) -> SuperNet | TreeSuperNet:
    """The supernet of either kind of space. A tree-cell space's edges have independent candidates: entangled
    weights and zero-initialised residuals are MBConv ideas, and ignored there."""
    if isinstance(space, TreeSpace):
        return TreeSuperNet(space)
    return SuperNet(space, entangled=entangled, residual_init=residual_init)


def supernet_of(state: dict[str, Any], where: str, member: str | None = None) -> SuperNet | TreeSuperNet:
    """The trained supernet of a search checkpoint's state (independent or entangled weights, as searched);
    of a family's search, with the α of target `member` ('46ms')."""
    supernet = make_supernet(any_space_from_dict(state["space"], where=where), weights_of(state) == "entangled")
    supernet.load_state_dict(state["supernet"])
    family = {entry["label"]: entry["alphas"] for entry in state.get("family", [])}
    if family and member not in family:
        raise UserError(f"{where} is a search for several latency targets; name the one to derive, one of "
                        f"{', '.join(family)} (`proxyless derive RUN_DIR --target {next(iter(family))}`)")
    if not family and member:
        raise UserError(f"{where} is a search for one target; derive it without --target")
    with torch.no_grad():
        for alpha, saved in zip(supernet.arch_parameters(), family.get(member) or []):
            alpha.copy_(saved)
    return supernet


def search_objective(run_dir: Path, supernet: SuperNet, member: str | None = None) -> LatencyObjective | None:
    """The latency objective of a search that had a target (rebuilt from its config.json), else None; of a
    family's search, that of target `member`."""
    return _saved_objective(run_dir, supernet, member)[0]


def _saved_objective(run_dir: Path, supernet: SuperNet, member: str | None = None,
                     derive_depth: str | None = None) -> tuple[LatencyObjective | None, LatencyTarget | None]:
    """`search_objective` and the saved LatencyTarget it was built from (both None without a target), its
    derive_depth replaced by `derive_depth` when given."""
    settings = read_json(run_dir / "config.json", UserError, "search's saved settings")
    if not isinstance(settings, dict) or not isinstance(settings.get("space"), dict):
        raise UserError(f"{run_dir / 'config.json'}: expected a search's settings; the run directory is damaged")
    if not settings.get("latency"):
        return None, None
    saved = settings["latency"]
    if isinstance(saved, list):  # a family's: the member's target
        saved = next((t for t in saved if isinstance(t, dict) and target_label(t.get("target_ms", 0)) == member), None)
        if saved is None:
            raise UserError(f"{run_dir / 'config.json'}: no latency target {member}; the run directory is damaged")
    try:
        target = LatencyTarget(**{**saved, **({"derive_depth": derive_depth} if derive_depth else {})})
    except TypeError as err:
        raise UserError(f"{run_dir / 'config.json'}: a damaged latency target ({err})") from None
    deployed = any_space_from_dict(settings["space"], where=str(run_dir / "config.json"))
    return latency_objective(target, supernet, deployed), target


def _updated_latency_report(run_dir: Path, objective: LatencyObjective, supernet: SuperNet, arch: AnyArch, how: str,
                            measured: Any) -> dict[str, Any] | None:
    """latency.json for a re-derived net: new prediction; a measurement of the old net is dropped."""
    path = run_dir / "latency.json"
    if measured is not None:
        report = latency_report(objective, arch, how, objective.model.of_indices(supernet.argmax()), False, measured)
    elif path.is_file():
        report = json.loads(path.read_text())
        for stale in ("measured_ms", "measured_std_ms", "backend", "not_measured", "batch", "rounds",
                      "measured_error", "predicted_on_target"):
            report.pop(stale, None)
        predicted = objective.model.of_arch(on_space(arch, objective.model.space))
        report = judged({**report, "predicted_ms": predicted, "error": predicted / objective.target - 1,
                         "derived_by": how}, objective)
    else:  # the search stopped before writing one; `proxyless search --resume` will
        return None
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return report
