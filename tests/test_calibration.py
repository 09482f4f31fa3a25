"""Calibrating a latency table never makes it worse: the kind of calibration (the raw sum, a scale, a line)
is chosen by its leave-one-out error on the calibration networks, checked here on recorded timings."""

import json
from pathlib import Path

import numpy as np
import pytest

from proxyless.latency.validate import choose_calibration, fit_calibration

RECORDED = json.loads((Path(__file__).parent / "data" / "recorded_latency.json").read_text())["sets"]


def mape(predicted, measured):
    return float(np.mean(np.abs(np.asarray(predicted) - measured) / measured))


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_the_chosen_calibration_is_never_worse_than_the_raw_sum_on_held_out_nets(name):
    """Fitted on 20 recorded networks, judged on the other 30: for the four tables as measured (their
    per-op sums 7-21% off), and for the same timings with a table that is already right (its sums the
    measurements' best line), where fitting a line to 20 noisy nets is what made a table worse before."""
    raw, measured = np.array(RECORDED[name]["raw_ms"]), np.array(RECORDED[name]["measured_ms"])
    best_line = fit_calibration(raw, measured)
    accurate = best_line.scale * raw + best_line.offset
    for sums, helps in ((raw, True), (accurate, False)):
        fit, kind, errors = choose_calibration(sums[:20], measured[:20])
        held_out = mape(fit.scale * sums[20:] + fit.offset, measured[20:])
        assert held_out <= mape(sums[20:], measured[20:]) + 1e-12, (kind, errors)
        assert (kind != "none") == helps and set(errors) == {"none", "scale", "affine"}
    assert mape(raw[20:], measured[20:]) > 0.05 > held_out  # the measured tables need calibrating


def test_each_kind_is_chosen_where_it_is_the_truth():
    raw = np.linspace(5.0, 40.0, 12)
    wobble = 1 + 0.002 * np.sin(np.arange(12))  # a little noise, so no fit is exact
    for truth, kind in ((raw * wobble, "none"), (1.3 * raw * wobble, "scale"), ((0.8 * raw + 6.0) * wobble, "affine")):
        fit, chosen, _ = choose_calibration(raw, truth)
        assert chosen == kind and mape(fit.scale * raw + fit.offset, truth) < 0.01
    with pytest.raises(Exception, match="at least 3 networks"):
        choose_calibration([1.0, 2.0], [1.0, 2.0])


def test_a_line_that_reverses_the_order_of_the_nets_is_never_chosen():
    """Three noisy timings that fall as the sum grows: the line fits them exactly (leave-one-out error 0),
    but it would turn a search's reachable range upside down (a CI failure: '26.42 to 9.75 ms')."""
    fit, kind, errors = choose_calibration([10.0, 20.0, 30.0], [12.0, 11.0, 10.0])
    assert errors["affine"] < errors["scale"] and kind != "affine" and fit.scale > 0


def test_a_line_that_puts_the_fastest_net_of_the_space_below_zero_is_never_chosen():
    """Three timings that fit a line with a large negative offset: exact on them, but the space's fastest
    net (raw sum 2) would be predicted at a negative time, and a target taken from the reachable range
    with it (a CI failure: -0.291 ms)."""
    raw, measured = [10.0, 20.0, 30.0], [5.0, 25.0, 45.0]  # measured = 2 raw - 15: exact, below 0 at 2
    assert choose_calibration(raw, measured)[1] == "affine"  # the calibration nets alone allow it
    fit, kind, errors = choose_calibration(raw, measured, fastest_raw=2.0)
    assert errors["affine"] < errors["scale"] and kind != "affine" and fit.apply(2.0) > 0
