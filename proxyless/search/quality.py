"""Search quality against ground truth: does the supernet rank subnets right, and how good is the derived net?

A benchmark such as NAS-Bench-Macro trains every architecture of a small space on its own and records
its true accuracy. Given such a table:

    truth = load_ground_truth("nas-bench-macro.json", space)
    score = subnet_accuracy(supernet, plan, valid_loader, recalibrate=train_batches)   # one subnet
    ranking_report(scores, truth, costs)        # Kendall τ, Spearman ρ: overall and at about equal cost
    regret_report(derived, truth, per_layer_latency(model), target_ms=20)   # regret and the baselines

Architecture codes: an architecture is a list of candidate indices, one per searchable layer (index i
means `space.layers()[layer].candidates[i]`); its code is those indices as decimal digits, e.g.
"01201120". A table is a JSON object mapping codes to a number or to a record with `mean_acc` (and,
optionally, `params` and `flops`), as NAS-Bench-Macro's file does:

    {"02012100": {"test_acc": [...], "mean_acc": 89.19, "std": 0.1, "params": 890666, "flops": 47327744}, ...}

Accuracies keep the table's unit (percent there), so a regret is in points of that unit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from proxyless.errors import UserError
from proxyless.infra.atomic import read_json
from proxyless.latency.predict import LatencyModel
from proxyless.search.supernet import SuperNet
from proxyless.space import SearchSpace

__all__ = [
    "GroundTruth",
    "GroundTruthError",
    "QualityError",
    "RankCorrelation",
    "RankingReport",
    "RegretReport",
    "TruthRecord",
    "kendall_tau",
    "load_ground_truth",
    "per_layer_latency",
    "ranking_report",
    "recalibrate_bn",
    "regret_report",
    "sample_archs",
    "spearman_rho",
    "subnet_accuracy",
]

Indices = Sequence[int]

#: Every batch norm whose running statistics a recalibration replaces, selected by type.
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
#: Rows of the pairwise sign matrix computed at once by `kendall_tau` (bounds its memory to ~13 MB for 6,561 nets).
_TAU_ROWS = 256
#: Spaces up to this many architectures are sampled from a permutation of all of them.
_ENUMERABLE = 1 << 20


class QualityError(UserError):
    """Bad input to a search-quality measurement; the message names the fix."""


class GroundTruthError(QualityError):
    """A table of true accuracies does not fit its space, or an architecture is not in it."""


# -- ground truth ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TruthRecord:
    """What a table says about one architecture: its true accuracy and, if listed, params and FLOPs."""

    accuracy: float
    params: float | None = None
    flops: float | None = None


@dataclass(frozen=True)
class GroundTruth:
    """True accuracies of architectures of `space`, keyed by code (see the module docstring).

    Construction checks every code: one digit per searchable layer, each digit below its layer's
    number of candidates. The table may list a subset of the space.
    """

    space: SearchSpace
    records: Mapping[str, TruthRecord] = field(repr=False)
    source: str = "ground-truth table"  # named in error messages: the file it was read from
    sizes: tuple[int, ...] = field(init=False, repr=False)  # candidates per searchable layer

    def __post_init__(self) -> None:
        sizes = tuple(len(slot.candidates) for slot in self.space.layers())
        if max(sizes) > 10:
            raise GroundTruthError(f"space {self.space.name!r} has a layer with {max(sizes)} candidates; "
                                   "codes of one decimal digit per layer allow at most 10")
        object.__setattr__(self, "sizes", sizes)
        for code in self.records:
            _check_code(code, sizes, self.space.name, self.source)
        # sorted by code, read-only: `codes` and every report iterate in one fixed order
        object.__setattr__(self, "records", MappingProxyType(dict(sorted(self.records.items()))))

    @property
    def codes(self) -> tuple[str, ...]:
        """Every code in the table, sorted."""
        return tuple(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def all_indices(self) -> list[list[int]]:
        """Every architecture in the table as candidate indices, in the order of `codes`."""
        return [[int(digit) for digit in code] for code in self.records]

    def code_of(self, indices: Indices) -> str:
        """[0, 1, 2] -> "012", after checking that the indices form an architecture of the space."""
        indices = list(indices)
        fits = len(indices) == len(self.sizes) and all(_is_index(i, size) for i, size in zip(indices, self.sizes))
        if not fits:
            raise GroundTruthError(f"{indices} is not an architecture of space {self.space.name!r}: it needs one "
                                   f"candidate index per searchable layer, below {list(self.sizes)}")
        return "".join(str(int(i)) for i in indices)

    def indices_of(self, code: str) -> list[int]:
        """"012" -> [0, 1, 2], after checking the code against the space."""
        _check_code(code, self.sizes, self.space.name)
        return [int(digit) for digit in code]

    def record(self, indices: Indices) -> TruthRecord:
        """Everything the table says about the architecture `indices`."""
        code = self.code_of(indices)
        if code not in self.records:
            raise GroundTruthError(f"architecture {code} is not in {self.source}; use only architectures it lists "
                                   "(GroundTruth.codes)")
        return self.records[code]

    def accuracy(self, indices: Indices) -> float:
        """True accuracy of the architecture `indices`, in the table's unit."""
        return self.record(indices).accuracy

    def params(self, indices: Indices) -> float | None:
        """Parameter count of `indices`; None if the table does not list it."""
        return self.record(indices).params

    def flops(self, indices: Indices) -> float | None:
        """FLOPs of `indices` as the table counts them; None if the table does not list them."""
        return self.record(indices).flops


def load_ground_truth(path: str | Path, space: SearchSpace) -> GroundTruth:
    """Read a JSON table of true accuracies for `space` (format in the module docstring)."""
    path = Path(path)
    data = read_json(path, GroundTruthError, "ground-truth table")
    if not isinstance(data, dict) or not data:
        raise GroundTruthError(f"{path}: expected a non-empty JSON object mapping architecture codes to accuracies, "
                               'e.g. {"0120": 91.5}')
    records = {code: _record_from(value, f"{path}: code {code!r}") for code, value in data.items()}
    return GroundTruth(space, records, str(path))


def _record_from(value: Any, where: str) -> TruthRecord:
    if _is_number(value):
        return TruthRecord(float(value))
    if isinstance(value, dict) and _is_number(value.get("mean_acc")):
        return TruthRecord(float(value["mean_acc"]), _optional_number(value, "params", where),
                           _optional_number(value, "flops", where))
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    raise GroundTruthError(f"{where}: expected a finite number or an object with a numeric 'mean_acc', got {shown}")


def _optional_number(record: dict, name: str, where: str) -> float | None:
    value = record.get(name)
    if value is not None and not _is_number(value):
        raise GroundTruthError(f"{where}: '{name}' must be a finite number, got {value!r}; fix or drop it")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_index(value: Any, size: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < size


def _check_code(code: Any, sizes: tuple[int, ...], space: str, where: str = "") -> None:
    """Raise unless `code` is an architecture code of the space; `where` (a file) prefixes the message."""
    prefix = f"{where}: " if where else ""
    if not isinstance(code, str) or not re.fullmatch(r"[0-9]*", code):
        raise GroundTruthError(f"{prefix}code {code!r} is not a string of decimal digits (one per searchable layer)")
    if len(code) != len(sizes):
        raise GroundTruthError(f"{prefix}code {code!r} has {len(code)} digits but space {space!r} has {len(sizes)} "
                               f"searchable layers; check that it belongs to space {space!r}")
    for layer, (digit, size) in enumerate(zip(code, sizes)):
        if int(digit) >= size:
            raise GroundTruthError(f"{prefix}code {code!r} picks candidate {digit} at layer {layer}, which has {size} "
                                   f"(0-{size - 1}); check that it belongs to space {space!r}")


# -- rank statistics ------------------------------------------------------------------------------


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of paired samples (ties in either count against neither order), as scipy's default.

    τ_b = (concordant − discordant) / sqrt((n0 − n1)(n0 − n2)), with n0 = n(n−1)/2 pairs and n1, n2 the
    pairs tied in x and in y. NaN when undefined: fewer than two pairs, or a constant sample.
    """
    a, b = _paired(x, y)
    pairs = len(a) * (len(a) - 1) / 2
    ties_a, ties_b = _tied_pairs(a), _tied_pairs(b)
    if pairs in (ties_a, ties_b):
        return math.nan
    # Σ over ordered pairs of sign(Δa)·sign(Δb) counts every unordered pair twice; rows in chunks bound memory
    signs = 0.0
    for start in range(0, len(a), _TAU_ROWS):
        rows = slice(start, start + _TAU_ROWS)
        signs += float((np.sign(a[rows, None] - a[None, :]) * np.sign(b[rows, None] - b[None, :])).sum())
    return signs / 2 / math.sqrt((pairs - ties_a) * (pairs - ties_b))


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks, tied values sharing their average rank.

    NaN when undefined: fewer than two values, or a constant sample.
    """
    a, b = _paired(x, y)
    if len(a) < 2:
        return math.nan
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    scale = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return math.nan if scale == 0 else float(ra @ rb) / scale


def _paired(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise QualityError(f"rank correlation needs two flat sequences of one length, got shapes {a.shape} and "
                           f"{b.shape}; pair every score with its accuracy")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise QualityError("rank correlation got a NaN or infinite value; drop the nets it belongs to")
    return a, b


def _tied_pairs(values: np.ndarray) -> float:
    counts = np.unique(values, return_counts=True)[1]
    return float((counts * (counts - 1) / 2).sum())


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; a group of c tied values ending at sorted position e shares rank e − (c − 1)/2."""
    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[group.ravel()]


# -- the supernet's accuracy for one subnet -------------------------------------------------------


@contextmanager
def recalibrate_bn(supernet: SuperNet, plan: Indices, batches: Iterable[Any],
                   memory_format: torch.memory_format = torch.contiguous_format) -> Iterator[SuperNet]:
    """Inside the block, the supernet in eval mode with BN statistics measured on the single path `plan`.

    Why: during the search every BN layer averages its running statistics over the random paths that
    ran through it, and that mixture describes no single subnet; evaluated with them a subnet's accuracy
    is mostly noise. The accuracy a supernet reports for a subnet is only trustworthy after
    recalibrating BN on that subnet (as SPOS and FairNAS do).

    Steps: save every BN buffer (running_mean, running_var, num_batches_tracked) and momentum, reset
    the statistics, set momentum to None (a cumulative average: every batch counts alike), run `plan`
    in train mode without gradients over `batches` (image tensors, or (images, targets) pairs as a
    DataLoader yields), switch to eval mode and yield. On leaving, even by an exception, the saved
    buffers, momenta and each module's train/eval mode come back exactly.
    """
    _check_plan(supernet, plan)
    norms = [m for m in supernet.modules() if isinstance(m, _BATCH_NORMS) and m.track_running_stats]
    saved = [(m.momentum, [buffer.clone() for buffer in _statistics(m)]) for m in norms]
    with _modes_kept(supernet):
        try:
            _measure_statistics(supernet, plan, norms, batches, memory_format)
            supernet.eval()
            yield supernet
        finally:
            with torch.no_grad():
                for norm, (momentum, buffers) in zip(norms, saved):
                    norm.momentum = momentum
                    for buffer, kept in zip(_statistics(norm), buffers):
                        buffer.copy_(kept)


def subnet_accuracy(supernet: SuperNet, plan: Indices, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    recalibrate: Iterable[Any] | None = None,
                    memory_format: torch.memory_format = torch.contiguous_format) -> float:
    """Top-1 accuracy (a fraction of the images) of the single path `plan` on `loader`'s (images, targets).

    With `recalibrate` (batches of images, see `recalibrate_bn`) the subnet is evaluated inside
    `recalibrate_bn`; without, with the supernet's BN statistics as they are, in eval mode. Batches go
    to the device of the supernet's parameters, in `memory_format` (the search loop uses channels_last).
    The supernet's train/eval modes and BN buffers are left as they were.
    """
    if recalibrate is not None:
        with recalibrate_bn(supernet, plan, recalibrate, memory_format):
            return _top1(supernet, plan, loader, memory_format)
    _check_plan(supernet, plan)
    with _modes_kept(supernet):
        supernet.eval()
        return _top1(supernet, plan, loader, memory_format)


def _check_plan(supernet: SuperNet, plan: Indices) -> None:
    sizes = [len(m.specs) for m in supernet.mixed_ops()]
    fits = len(plan) == len(sizes) and all(_is_index(i, size) for i, size in zip(plan, sizes))
    if not fits:
        raise QualityError(f"plan {list(plan)} is not a single path of this supernet: give one candidate index "
                           f"per searchable layer, below {sizes}")


def _statistics(norm: nn.Module) -> tuple[torch.Tensor, ...]:
    return norm.running_mean, norm.running_var, norm.num_batches_tracked


@contextmanager
def _modes_kept(model: nn.Module) -> Iterator[None]:
    """Restore every module's own train/eval flag on leaving (model.train(flag) would flatten them)."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _measure_statistics(supernet: SuperNet, plan: Indices, norms: list[nn.Module], batches: Iterable[Any],
                        memory_format: torch.memory_format) -> None:
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: the statistics do not depend on how many batches come
    supernet.train()
    device, seen = _device_of(supernet), 0
    with torch.no_grad():
        for batch in batches:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            supernet(images.to(device).contiguous(memory_format=memory_format), [int(i) for i in plan])
            seen += 1
    if seen == 0:
        raise QualityError("recalibrate_bn got no batches; pass a few batches of training images")


@torch.no_grad()
def _top1(supernet: SuperNet, plan: Indices, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
          memory_format: torch.memory_format) -> float:
    device, correct, seen = _device_of(supernet), 0, 0
    for images, targets in loader:
        logits = supernet(images.to(device).contiguous(memory_format=memory_format), [int(i) for i in plan])  # (B, C)
        correct += int((logits.argmax(1) == targets.to(device)).sum())
        seen += len(targets)
    if seen == 0:
        raise QualityError("subnet_accuracy got a loader with no images; pass the validation loader")
    return correct / seen


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# -- ranking ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankCorrelation:
    """How well scores order a set of nets; a coefficient is None where undefined (under two nets, or a
    constant side)."""

    count: int
    kendall_tau: float | None
    spearman_rho: float | None


@dataclass(frozen=True)
class RankingReport:
    """Rank correlation of the supernet's scores with the true accuracies.

    `overall` covers every scored net; `same_cost` only those whose cost is within ±`cost_tolerance` of
    the median cost. Overall correlation is flattered by size (bigger nets both score and train better);
    at equal cost it says whether the supernet can choose among the nets one latency target leaves.
    """

    overall: RankCorrelation
    same_cost: RankCorrelation
    median_cost: float
    cost_tolerance: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ranking_report(supernet_scores: Mapping[str, float], truth: GroundTruth, costs: Mapping[str, float],
                   cost_tolerance: float = 0.05) -> RankingReport:
    """Kendall τ and Spearman ρ between `supernet_scores` and the true accuracies, by code.

    `costs` gives every scored code a cost (predicted latency, MACs, ...) for the equal-cost subset.
    """
    if not cost_tolerance >= 0:
        raise QualityError(f"cost_tolerance must be a fraction >= 0, got {cost_tolerance!r}")
    codes = sorted(supernet_scores)
    if not codes:
        raise QualityError("ranking_report got no scores; score some architectures first (see sample_archs)")
    uncosted = [code for code in codes if code not in costs]
    if uncosted:
        raise QualityError(f"{len(uncosted)} scored architecture(s) have no cost, e.g. {uncosted[0]}; give costs "
                           "for every scored code")
    scores = [float(supernet_scores[code]) for code in codes]
    true = [truth.accuracy(truth.indices_of(code)) for code in codes]
    median = float(np.median([costs[code] for code in codes]))
    band = [i for i, code in enumerate(codes) if abs(costs[code] - median) <= cost_tolerance * abs(median)]
    return RankingReport(_correlation(scores, true), _correlation([scores[i] for i in band], [true[i] for i in band]),
                         median, cost_tolerance)


def _correlation(scores: list[float], true: list[float]) -> RankCorrelation:
    tau, rho = kendall_tau(scores, true), spearman_rho(scores, true)
    return RankCorrelation(len(scores), None if math.isnan(tau) else tau, None if math.isnan(rho) else rho)


def sample_archs(space: SearchSpace, n: int, seed: int | torch.Generator = 0) -> list[list[int]]:
    """`n` distinct architectures of `space` drawn uniformly at random (the same ones for the same seed)."""
    sizes = [len(slot.candidates) for slot in space.layers()]
    total = math.prod(sizes)
    if not (isinstance(n, int) and 0 <= n <= total):
        raise QualityError(f"cannot draw {n!r} distinct architectures from space {space.name!r}, which has {total}; "
                           f"ask for 0 to {total}")
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    if total <= _ENUMERABLE:  # the head of a random permutation: exactly uniform, no repeats
        return [_mixed_radix(number, sizes) for number in torch.randperm(total, generator=generator)[:n].tolist()]
    # too many to enumerate: draw with replacement and skip repeats (rare unless n is close to total)
    archs: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    while len(archs) < n:
        draws = torch.stack([torch.randint(size, (n,), generator=generator) for size in sizes], dim=1)  # (n, L)
        for arch in draws.tolist():
            if len(archs) < n and tuple(arch) not in seen:
                seen.add(tuple(arch))
                archs.append(arch)
    return archs


def _mixed_radix(number: int, sizes: list[int]) -> list[int]:
    """The digits of `number` with layer 0 most significant, so numbers in order are codes in order."""
    digits = []
    for size in reversed(sizes):
        number, digit = divmod(number, size)
        digits.append(digit)
    return digits[::-1]


# -- regret at a latency target ---------------------------------------------------------------------


@dataclass(frozen=True)
class RegretReport:
    """The derived net against every net of the table that fits the target, and two baselines.

    The pool: every net with latency <= target·(1 + tolerance). The band: nets within ±tolerance of the
    target. Accuracies and the regret are in the table's unit (points of percent for NAS-Bench-Macro).
    """

    target_ms: float
    tolerance: float
    pool_count: int
    derived_code: str
    derived_accuracy: float
    derived_latency_ms: float
    derived_in_band: bool
    best_code: str  # the most accurate net in the pool (the first code on ties)
    best_accuracy: float
    best_latency_ms: float
    regret: float  # best − derived; negative if the derived net is over budget and beats the pool
    percentile: float  # the fraction of the pool whose accuracy is <= the derived net's
    band_count: int
    band_mean_accuracy: float | None  # baseline "a random net in the band" (its expectation); None: empty band
    largest_code: str  # baseline "the largest net that fits": the slowest in the pool, ties by FLOPs
    largest_accuracy: float
    largest_latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def regret_report(derived: Indices, truth: GroundTruth, latency: Callable[[Indices], float], target_ms: float,
                  tolerance: float = 0.05) -> RegretReport:
    """Score the derived net `derived` at `target_ms` against every net of `truth` (see RegretReport).

    `latency` maps candidate indices to ms; for a latency table, `per_layer_latency(model)` is a fast one.
    """
    if not (_is_number(target_ms) and target_ms > 0 and _is_number(tolerance) and tolerance >= 0):
        raise QualityError(f"need target_ms > 0 and tolerance >= 0, got {target_ms!r} and {tolerance!r}")
    derived_code, derived_accuracy = truth.code_of(derived), truth.accuracy(derived)
    # 1. the latency of every net of the table, once
    latencies = {code: float(latency(indices)) for code, indices in zip(truth.codes, truth.all_indices())}
    accuracy = {code: record.accuracy for code, record in truth.records.items()}
    # 2. the pool that fits, and the band around the target inside it
    pool = [code for code in truth.codes if latencies[code] <= target_ms * (1 + tolerance)]
    if not pool:
        raise QualityError(f"no net of {truth.source} fits {target_ms} ms (+{tolerance:.0%}): the fastest takes "
                           f"{min(latencies.values()):.4g} ms; raise the target")
    band = [code for code in pool if abs(latencies[code] - target_ms) <= tolerance * target_ms]
    # 3. the best net and the largest that fits (max keeps the first code among equals)
    best = max(pool, key=lambda code: accuracy[code])
    largest = max(pool, key=lambda code: (latencies[code], _flops_or_least(truth.records[code])))
    return RegretReport(
        target_ms=target_ms, tolerance=tolerance, pool_count=len(pool),
        derived_code=derived_code, derived_accuracy=derived_accuracy, derived_latency_ms=latencies[derived_code],
        derived_in_band=abs(latencies[derived_code] - target_ms) <= tolerance * target_ms,
        best_code=best, best_accuracy=accuracy[best], best_latency_ms=latencies[best],
        regret=accuracy[best] - derived_accuracy,
        percentile=sum(accuracy[code] <= derived_accuracy for code in pool) / len(pool),
        band_count=len(band), band_mean_accuracy=float(np.mean([accuracy[c] for c in band])) if band else None,
        largest_code=largest, largest_accuracy=accuracy[largest], largest_latency_ms=latencies[largest],
    )


def _flops_or_least(record: TruthRecord) -> float:
    return -math.inf if record.flops is None else record.flops


def per_layer_latency(model: LatencyModel) -> Callable[[Indices], float]:
    """`model.of_indices` as plain float lookups: the same predictions, fast enough for every net of a table."""
    tables = [layer.tolist() for layer in model.per_layer]
    fixed, calibration = model.fixed, model.calibration

    def latency(indices: Indices) -> float:
        return float(calibration.apply(fixed + sum(table[i] for table, i in zip(tables, indices))))

    return latency
