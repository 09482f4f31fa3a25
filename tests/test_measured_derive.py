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


def test_a_search_tells_when_its_net_measures_off_target_and_measured_derive_lands_it():
    from proxyless.search.hardware import describe_latency, latency_report

    supernet = supernet_preferring(FAVOURITE)
    objective = objective_for(supernet, target=2.94)
    arch = supernet.arch_of(FAVOURITE)

    def slower_device(deployed, objective):  # what _measure returns, on a device 1.3x slower than the table
        return {"measured_ms": 1.3 * objective.model.of_arch(deployed), "measured_std_ms": 0.01,
                "backend": "simulated", "batch": 1, "rounds": 15}

    report = latency_report(objective, arch, "argmax", 2.94, measure=True, timer=slower_device)
    assert report["predicted_on_target"] and not report["on_target"] and report["on_target_by"] == "measured"
    assert report["measured_error"] == pytest.approx(0.3)
    lines = describe_latency(report)
    assert "the table says on target" in lines[0] and "MISSED as measured" in lines[-1] and "+30.0%" in lines[-1]
    assert "--measured-derive" in lines[-1]
    # the same device, with the derive correcting the table by measurement: on target as measured
    corrected = derive_measured(objective, supernet, device(objective.model, 1.3, []))
    corrected.kept["backend"] = "simulated"  # as derive_on_device records the backend it timed on
    landed = latency_report(objective, supernet.arch_of(corrected.indices), corrected.how, 2.94, measure=False,
                            measured=corrected)
    assert landed["on_target"] and landed["on_target_by"] == "measured"
    assert not any("MISSED" in line for line in describe_latency(landed))
    # nothing measured (a table of another device): the prediction is all there is, and it says so
    unmeasured = latency_report(objective, arch, "argmax", 2.94, measure=False)
    assert unmeasured["on_target"] and unmeasured["on_target_by"] == "predicted"
