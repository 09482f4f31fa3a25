"""`--measured-derive`: the table corrected by timing the derived net, on a device unlike the table."""

import pytest
import torch

from proxyless.latency.lut import Stat
from proxyless.search.measured_derive import derive_measured
from proxyless.search.objective import DERIVE_BAND
from proxyless.search.supernet import SuperNet
from test_search_latency import SPACE, objective_for

FAVOURITE = [0, 1, 1, 1]  # predicted 2.94 ms on the synthetic table; nets of 2.66 ms exist (2.94 / 1.1 ≈ 2.67)


def supernet_preferring(indices):
    torch.manual_seed(0)
    supernet = SuperNet(SPACE)
    with torch.no_grad():
        for alpha, index in zip(supernet.arch_parameters(), indices):
            alpha.zero_()
            alpha[index] = 3.0
    assert supernet.argmax() == indices
    return supernet


def device(model, slowdown, timed):
    """A device `slowdown` times slower than the table: what `measure` would return on it."""
    def measure(indices):
        timed.append(list(indices))
        return Stat(slowdown * model.of_indices(indices), 0.01, 15)
    return measure


def test_a_slower_device_is_corrected_by_one_measurement():
    supernet = supernet_preferring(FAVOURITE)
    objective = objective_for(supernet, target=2.94)
    assert objective.derive(supernet) == (FAVOURITE, "argmax")  # the table alone keeps the favourite
    timed = []
    result = derive_measured(objective, supernet, device(objective.model, 1.1, timed))
    assert timed[0] == FAVOURITE and len(timed) == 2 == len(result.trail)
    assert result.trail[0]["measured_ms"] == pytest.approx(2.94 * 1.1)  # +10%: off target
    assert result.kept["table_scale"] == pytest.approx(1.1) and result.indices == timed[1] != FAVOURITE
    assert abs(result.kept["measured_ms"] / 2.94 - 1) <= DERIVE_BAND
    assert "table corrected ×1.100" in result.how


def test_a_device_like_the_table_times_one_net_and_keeps_it():
    supernet = supernet_preferring(FAVOURITE)
    objective = objective_for(supernet, target=2.94)
    timed = []
    result = derive_measured(objective, supernet, device(objective.model, 1.0, timed))
    assert timed == [FAVOURITE] and result.indices == FAVOURITE and result.how == "argmax"
    assert result.kept == result.trail[0] and result.kept["table_scale"] == 1.0


def test_the_net_measured_closest_is_kept_when_no_correction_lands():
    supernet = supernet_preferring(FAVOURITE)
    objective = objective_for(supernet, target=2.94)
    timed = []
    # 3× slower: no net of the space can reach the target on this device, so the fastest tried is kept
    result = derive_measured(objective, supernet, device(objective.model, 3.0, timed))
    assert 1 <= len(timed) <= 3 and len({tuple(t) for t in timed}) == len(timed)
    best = min(result.trail, key=lambda r: abs(r["measured_ms"] - 2.94))
    assert result.kept == best
