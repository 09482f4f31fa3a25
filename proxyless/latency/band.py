"""Random architectures at a latency: uniform over the nets of a space whose predicted latency lies in a band.

    archs_in_band(model, 78.0, 80.0, count=6, seed=0)   # 6 distinct nets, each predicted in [78, 80] ms

Drawing the whole space uniformly and keeping the nets that land in the band gives the same distribution,
but near the space's fastest or slowest nets almost nothing lands: on proxyless-cifar (width 0.5) not one
of 200,000 uniform draws was predicted within ±1.25% of 79 ms, a latency its searched nets reach (its
nets span 12-82 ms in that table; uniform draws centre on 51). A table's prediction is a sum over
layers, so the nets can be counted by latency instead:

1. round each op's time to a bin (a quarter of the band's width over the number of layers); histogram
   the layer sums from the last layer back (`ways[l][s]`: how many choices for layers l.. sum to s bins);
2. draw a total in the band in proportion to its count, then each layer's op, first to last, in
   proportion to the ways the rest can complete that total: every choice in the band equally likely;
3. the bins round each op by up to half a bin, so 1-2 run on the band widened by the largest total
   rounding error, and a net is kept only when its exact prediction lies in the band (and it is new):
   uniform over the band's nets, none missed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np

from proxyless.arch import Arch
from proxyless.arch_kinds import arch_of_indices
from proxyless.errors import UserError
from proxyless.latency.predict import LatencyModel, reachable


def archs_in_band(model: LatencyModel, low_ms: float, high_ms: float, count: int, seed: int = 0,
                  exclude: Sequence[Arch] = ()) -> list[Arch]:
    """`count` distinct nets of the model's space drawn uniformly from those predicted within
    [`low_ms`, `high_ms`], none of them in `exclude`; a `UserError` names the space's range when the band
    holds too few."""
    if not low_ms <= high_ms:
        raise UserError(f"a latency band runs from low to high, got {low_ms:g} .. {high_ms:g} ms")
    scale, offset = model.calibration.scale, model.calibration.offset
    assert scale > 0, "a calibration scales latency up or down, never flips it"
    # the band on the layers' sum: undo the calibration and the fixed parts
    lo, hi = ((ms - offset) / scale - model.fixed for ms in (low_ms, high_ms))
    # bins fine enough that the widened band is at most a quarter wider than the band (most draws are
    # kept), coarse enough that the histogram stays under 100,000 bins
    largest = sum(float(lat.max()) for lat in model.per_layer)
    bin_ms = max((hi - lo) / (4 * len(model.per_layer)), largest / 1e5, 1e-9)
    steps = [np.rint(lat.numpy() / bin_ms).astype(np.int64) for lat in model.per_layer]
    slack = len(steps) * bin_ms / 2  # the largest rounding error of a sum of rounded ops
    ways = _ways(steps)
    first, last = max(math.floor((lo - slack) / bin_ms), 0), min(math.ceil((hi + slack) / bin_ms), len(ways[0]) - 1)
    totals = ways[0][first:last + 1] if first <= last else np.zeros(0)
    seen = {tuple(arch.op_strings()) for arch in exclude}
    rng, found = random.Random(seed), []
    # most draws land in the band (the widened band is a quarter wider); the cap ends the search for a
    # band with fewer distinct nets than asked
    for _ in range(50 * count + 1000 if totals.sum() >= count else 0):
        indices = _draw(steps, ways, first + _pick(rng, totals), rng)
        arch = arch_of_indices(model.space, indices, name=f"band-{seed}-{len(found)}")
        if low_ms <= model.of_indices(indices) <= high_ms and tuple(arch.op_strings()) not in seen:
            seen.add(tuple(arch.op_strings()))
            found.append(arch)
            if len(found) == count:
                return found
    fastest, slowest = reachable(model)
    raise UserError(f"only {len(found)} distinct nets of {model.space.name} found predicted within {low_ms:.2f} .. "
                    f"{high_ms:.2f} ms, {count} asked (its nets span {fastest:.2f} .. {slowest:.2f} ms): "
                    "widen the band or ask for fewer")


def _ways(steps: list[np.ndarray]) -> list[np.ndarray]:
    """ways[l][s]: how many choices of layers l.. (one op each) sum to s bins; ways[L] = [1]. Floats: the
    counts outgrow integers (7^21 nets) but only their ratios are used."""
    ways = [np.ones(1)]
    for layer in reversed(steps):
        after = ways[0]
        here = np.zeros(len(after) + int(layer.max()))
        for step in layer:
            here[step:step + len(after)] += after
        ways.insert(0, here)
    return ways


def _draw(steps: list[np.ndarray], ways: list[np.ndarray], total: int, rng: random.Random) -> list[int]:
    """One choice of op per layer whose bins sum to `total`, uniform over all such choices."""
    indices = []
    for layer, after in zip(steps, ways[1:]):
        rest = total - layer
        weights = np.where((rest >= 0) & (rest < len(after)), after[np.clip(rest, 0, len(after) - 1)], 0.0)
        index = _pick(rng, weights)
        indices.append(index)
        total -= int(layer[index])
    return indices


def _pick(rng: random.Random, weights: np.ndarray) -> int:
    """An index drawn in proportion to `weights` (not all zero)."""
    cumulative = np.cumsum(weights)
    return int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
