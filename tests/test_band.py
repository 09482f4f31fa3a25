"""Random nets at a latency: every net of a small space is enumerated to check that the band's draws are
exactly its nets in the band, each equally likely, and that the edges of the space are reached."""

import itertools
import random
from collections import Counter

import numpy as np
import pytest

from helpers import tiny32_space
from proxyless.errors import UserError
from proxyless.latency.band import archs_in_band
from proxyless.latency.keys import Context, all_keys
from proxyless.latency.lut import LatencyTable, Stat
from proxyless.latency.predict import LatencyModel, reachable
from proxyless.space import Stage

OPS = ("mb_k3_e3", "mb_k3_e6", "mb_k5_e3", "mb_k5_e6", "mb_k7_e3", "mb_k7_e6")
# six layers, four of which may be zero: 86,436 nets
SPACE = tiny32_space(OPS, zero_when_shape_kept=True, stages=(Stage(8, 3, 2), Stage(16, 3, 2)))


def model(calibration: dict | None = None) -> LatencyModel:
    """Made-up times, distinct for every key, so that nets rarely tie."""
    rng = random.Random(0)
    entries = {key: Stat(rng.uniform(0.1, 1.0), 0.0, 3) for key in all_keys(SPACE, Context(batch=1))}
    header = {"backend": "torch-cpu", "batch": 1, "dtype": "float32", "threads": 1}
    return LatencyTable({**header, "calibration": calibration} if calibration else header, entries)


def every_net(latency: LatencyModel) -> dict[tuple[int, ...], float]:
    """{indices: predicted ms} of every net of SPACE."""
    sums = latency.fixed + sum(np.ix_(*[lat.numpy() for lat in latency.per_layer]))
    sums = latency.calibration.apply(sums)
    return {index: float(sums[index]) for index in itertools.product(*(range(n) for n in sums.shape))}


def indices_of(arch) -> tuple[int, ...]:
    return tuple(SPACE.indices_of(arch))


@pytest.fixture(scope="module")
def latency() -> LatencyModel:
    return LatencyModel(SPACE, model())


@pytest.fixture(scope="module")
def nets(latency) -> dict[tuple[int, ...], float]:
    return every_net(latency)


def test_a_band_yields_exactly_its_nets(latency, nets):
    middle = float(np.median(list(nets.values())))
    low, high = middle - 0.005, middle + 0.005
    inside = {index for index, ms in nets.items() if low <= ms <= high}
    assert 300 < len(inside) < 1000
    drawn = archs_in_band(latency, low, high, len(inside), seed=3)
    assert {indices_of(arch) for arch in drawn} == inside  # all of them, each once, nothing outside
    with pytest.raises(UserError, match=rf"only {len(inside)} distinct nets .*its nets span"):
        archs_in_band(latency, low, high, len(inside) + 1, seed=3)
    rest = archs_in_band(latency, low, high, len(inside) - 1, seed=4, exclude=drawn[:1])  # all but the excluded
    assert {indices_of(arch) for arch in rest} == inside - {indices_of(drawn[0])}


def test_each_net_in_the_band_is_equally_likely(latency, nets):
    middle = float(np.median(list(nets.values())))
    low, high = middle - 0.0003, middle + 0.0003
    inside = {index for index, ms in nets.items() if low <= ms <= high}
    assert 10 <= len(inside) <= 60
    draws = 50 * len(inside)
    counts = Counter(indices_of(archs_in_band(latency, low, high, 1, seed=s)[0]) for s in range(draws))
    assert set(counts) == inside
    chi2 = sum((c - 50) ** 2 / 50 for c in counts.values())
    assert chi2 < 2 * len(inside) + 30  # well above the df (len - 1) that a uniform draw gives


def test_the_slowest_nets_are_reached(latency, nets):
    fastest, slowest = reachable(latency)
    assert (fastest, slowest) == pytest.approx((min(nets.values()), max(nets.values())))
    top = sorted(nets.values())[-3]
    assert sum(ms >= top for ms in random.Random(0).sample(list(nets.values()), 2000)) == 0  # uniform misses them
    drawn = archs_in_band(latency, top, slowest, 3, seed=0)
    assert sorted(nets[indices_of(arch)] for arch in drawn) == pytest.approx(sorted(nets.values())[-3:])


def test_a_calibrated_table_draws_in_calibrated_milliseconds():
    latency = LatencyModel(SPACE, model({"scale": 1.5, "offset": 2.0}))
    nets = every_net(latency)
    middle = float(np.median(list(nets.values())))
    drawn = archs_in_band(latency, middle - 0.03, middle + 0.03, 20, seed=1)
    assert all(middle - 0.03 <= latency.of_arch(arch) <= middle + 0.03 for arch in drawn)
    assert reachable(latency) == pytest.approx((min(nets.values()), max(nets.values())))


def test_a_band_outside_the_space_or_upside_down_is_refused(latency):
    fastest, slowest = reachable(latency)
    with pytest.raises(UserError, match=rf"only 0 distinct nets .* span {fastest:.2f} .. {slowest:.2f} ms"):
        archs_in_band(latency, slowest + 1, slowest + 2, 1)
    with pytest.raises(UserError, match="from low to high"):
        archs_in_band(latency, 5.0, 4.0, 1)
