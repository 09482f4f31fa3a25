"""Scoring a supernet and a search against true accuracies: codes, rank statistics, BN recalibration,
subnet accuracy, the ranking and regret reports, on the tiny space and made-up tables."""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import synthetic_table, tiny_space
from proxyless.errors import UserError
from proxyless.latency.lut import LatencyTable
from proxyless.latency.predict import LatencyModel
from proxyless.search.quality import (
    GroundTruth,
    GroundTruthError,
    QualityError,
    TruthRecord,
    kendall_tau,
    load_ground_truth,
    per_layer_latency,
    ranking_report,
    recalibrate_bn,
    regret_report,
    sample_archs,
    spearman_rho,
    subnet_accuracy,
)
from proxyless.search.supernet import SuperNet
from proxyless.space import Stage

# 16 px, three layers: 3 candidates (two MBConv + zero), 3, then 2 (the stride-2 layer): 18 architectures.
SPACE = tiny_space()
CODES = ["".join(map(str, arch)) for arch in itertools.product(range(3), range(3), range(2))]
PLAN = [1, 0, 1]  # k5e6, k3e3, k5e6: every BN on the path matters (no zero layer)


def write_table(tmp_path, data, name="truth.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def supernet(seed=0):
    """A real supernet with trained-like BN scales (no zero-initialised residual branch left)."""
    torch.manual_seed(seed)
    net = SuperNet(SPACE)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.1)
    return net


def norms(net):
    return [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def spoil_statistics(net):
    """Running statistics that describe no subnet, as after averaging over random paths."""
    with torch.no_grad():
        for bn in norms(net):
            bn.running_mean.fill_(3.0)
            bn.running_var.fill_(50.0)
            bn.num_batches_tracked.fill_(11)


def buffers(net):
    return {name: b.clone() for name, b in net.named_buffers()}


def images(seed, count=8):
    return torch.randn(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


# -- ground truth ---------------------------------------------------------------------------------


def test_codes_round_trip_and_records_are_read(tmp_path):
    data = {code: 50.0 + k for k, code in enumerate(CODES)}
    data["120"] = {"test_acc": [80.0, 81.0], "mean_acc": 80.5, "std": 0.5, "params": 1234, "flops": 5678}
    truth = load_ground_truth(write_table(tmp_path, data), SPACE)
    assert len(truth) == 18 and truth.codes == tuple(sorted(CODES))
    assert truth.all_indices() == [[int(d) for d in code] for code in sorted(CODES)]
    for code, indices in zip(truth.codes, truth.all_indices()):
        assert truth.indices_of(code) == indices and truth.code_of(indices) == code
    assert truth.accuracy([1, 2, 0]) == 80.5 and truth.params([1, 2, 0]) == 1234 and truth.flops([1, 2, 0]) == 5678
    assert truth.accuracy([0, 0, 1]) == 51.0 and truth.params([0, 0, 1]) is None and truth.flops([0, 0, 1]) is None
    assert truth.code_of(np.array([2, 1, 0])) == "210"  # numpy indices, as from argmax over arrays


@pytest.mark.parametrize("text, expected", [
    ('{"01": 90}', "code '01' has 2 digits but space 'tiny' has 3 searchable layers"),
    ('{"000": 90, "0120": 91}', "code '0120' has 4 digits"),
    ('{"031": 90}', "code '031' picks candidate 3 at layer 1, which has 3 (0-2)"),
    ('{"002": 90}', "code '002' picks candidate 2 at layer 2, which has 2 (0-1)"),
    ('{"0a1": 90}', "code '0a1' is not a string of decimal digits"),
    ('{"011": 90,', "not valid JSON"),
    ("[90, 91]", "expected a non-empty JSON object"),
    ("{}", "expected a non-empty JSON object"),
    ('{"011": "high"}', "code '011': expected a finite number or an object with a numeric 'mean_acc'"),
    ('{"011": {"test_acc": [90]}}', "numeric 'mean_acc'"),
    ('{"011": NaN}', "expected a finite number"),
    ('{"011": {"mean_acc": 90, "flops": "many"}}', "'flops' must be a finite number"),
])
def test_a_bad_table_is_one_line_naming_the_file_and_the_problem(tmp_path, text, expected):
    path = write_table(tmp_path, text)
    with pytest.raises(GroundTruthError) as err:
        load_ground_truth(path, SPACE)
    message = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in message
    assert message.startswith(str(path)) and expected in message


def test_a_missing_table_is_named(tmp_path):
    with pytest.raises(GroundTruthError, match="does not exist"):
        load_ground_truth(tmp_path / "absent.json", SPACE)


def test_architectures_outside_the_space_or_the_table_are_refused():
    truth = GroundTruth(SPACE, {"000": TruthRecord(70.0), "101": TruthRecord(75.0)}, "part.json")
    for bad in ([0, 0], [0, 3, 0], [0, 0, 2], [0, -1, 0], [0, True, 0]):
        with pytest.raises(GroundTruthError, match="is not an architecture of space 'tiny'"):
            truth.code_of(bad)
    with pytest.raises(GroundTruthError, match="architecture 011 is not in part.json"):
        truth.accuracy([0, 1, 1])
    with pytest.raises(GroundTruthError, match="code '0003' has 4 digits"):
        truth.indices_of("0003")


# -- rank statistics ------------------------------------------------------------------------------


def naive_tau_b(x, y):
    """τ-b straight from its definition, pair by pair."""
    s = ties_x = ties_y = pairs = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        pairs += 1
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        s += dx * dy
        ties_x += dx == 0
        ties_y += dy == 0
    return s / math.sqrt((pairs - ties_x) * (pairs - ties_y))


def test_rank_correlations_of_hand_computed_cases():
    # one swap in each half: 8 concordant, 2 discordant pairs; Σd² = 4
    assert kendall_tau([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.6)
    assert spearman_rho([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # one pair tied in x, one in y, 4 concordant: 4 / sqrt(5·5); average ranks (1, 2.5, 2.5, 4), (1, 2, 3.5, 3.5)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert spearman_rho([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(3.75 / 4.5)


def test_rank_correlations_of_agreement_reversal_and_monotone_transforms():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=40), rng.normal(size=40)
    for corr in (kendall_tau, spearman_rho):
        assert corr(x, 3 * x + 1) == pytest.approx(1.0)
        assert corr(x, -x) == pytest.approx(-1.0)
        assert corr(np.exp(x), y**3) == pytest.approx(corr(x, y))
        assert corr(x, y) == pytest.approx(corr(y, x))
        assert math.isnan(corr([1, 2, 3], [5, 5, 5])) and math.isnan(corr([1], [2]))
        with pytest.raises(QualityError, match="one length"):
            corr([1, 2, 3], [1, 2])
        with pytest.raises(QualityError, match="NaN or infinite"):
            corr([1, 2, math.nan], [1, 2, 3])


def test_kendall_tau_b_with_many_ties_matches_its_definition():
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 4, size=600), rng.integers(0, 5, size=600)  # 600 > one chunk of rows
    y = np.where(rng.random(600) < 0.5, x, y)  # correlated, so τ is far from 0
    assert kendall_tau(x, y) == pytest.approx(naive_tau_b(x, y), abs=1e-12)
    assert kendall_tau(x, y) > 0.3


# -- BN recalibration and subnet accuracy ---------------------------------------------------------


def test_recalibration_measures_the_paths_statistics_and_restores_the_spoiled_ones():
    net, calib, x = supernet(), [images(1), images(2), images(3)], images(4)
    other = copy.deepcopy(net)  # the same weights, fresh statistics
    spoil_statistics(net)
    net.train()
    net.stem.eval()  # a mixed set of modes, to come back as it was
    modes, spoiled = {name: m.training for name, m in net.named_modules()}, buffers(net)
    with torch.no_grad():
        before = copy.deepcopy(net).eval()(x, PLAN)
        with recalibrate_bn(other, PLAN, calib):
            fresh = other(x, PLAN)
        with recalibrate_bn(net, PLAN, [(b, torch.zeros(8)) for b in calib]) as same:  # (images, targets) pairs
            assert same is net and not any(m.training for m in net.modules())
            inside = net(x, PLAN)
            # the stem's BN holds the cumulative average of the per-batch statistics of the stem's conv output
            stem_out = [net.stem[0](b) for b in calib]  # each (8, C, 8, 8)
            assert torch.allclose(net.stem[1].running_mean, sum(o.mean((0, 2, 3)) for o in stem_out) / 3, atol=1e-5)
            assert torch.allclose(net.stem[1].running_var, sum(o.var((0, 2, 3)) for o in stem_out) / 3, rtol=1e-4)
            assert int(net.stem[1].num_batches_tracked) == 3
    assert torch.allclose(inside, fresh, atol=1e-5)  # whatever the statistics were before
    assert not torch.allclose(inside, before, atol=1e-2)
    after = buffers(net)
    assert after.keys() == spoiled.keys() and all(torch.equal(after[k], spoiled[k]) for k in spoiled)
    assert {name: m.training for name, m in net.named_modules()} == modes
    assert all(bn.momentum == 0.1 for bn in norms(net))


def test_recalibration_restores_after_an_error_and_refuses_bad_input():
    net = supernet()
    spoil_statistics(net)
    spoiled = buffers(net)
    with pytest.raises(RuntimeError, match="inside"):
        with recalibrate_bn(net, PLAN, [images(1)]):
            raise RuntimeError("inside")
    with pytest.raises(QualityError, match="got no batches"):
        with recalibrate_bn(net, PLAN, []):
            pass
    with pytest.raises(QualityError, match="not a single path of this supernet"):
        with recalibrate_bn(net, [0, 0, 2], [images(1)]):
            pass
    assert all(torch.equal(b, spoiled[name]) for name, b in net.named_buffers())
    assert all(bn.momentum == 0.1 for bn in norms(net)) and net.training


def targets_with_hits(logits, hits):
    """Targets that the argmax of `logits` hits on the first `hits` rows and misses on the rest."""
    predicted = logits.argmax(1)
    return torch.where(torch.arange(len(predicted)) < hits, predicted, (predicted + 1) % logits.shape[1])


def test_subnet_accuracy_counts_images_not_batches():
    net = supernet()
    spoil_statistics(net)
    x1, x2 = images(5, count=5), images(6, count=3)
    with torch.no_grad():
        logits1, logits2 = copy.deepcopy(net).eval()(x1, PLAN), copy.deepcopy(net).eval()(x2, PLAN)
    loader = [(x1, targets_with_hits(logits1, 4)), (x2, targets_with_hits(logits2, 0))]
    assert subnet_accuracy(net, PLAN, loader) == 4 / 8  # the mean of the batches' accuracies would be 0.4
    assert subnet_accuracy(net, PLAN, loader, memory_format=torch.channels_last) == 4 / 8
    assert net.training  # as it was
    with pytest.raises(QualityError, match="no images"):
        subnet_accuracy(net, PLAN, [])


def test_subnet_accuracy_with_recalibration_scores_the_recalibrated_subnet():
    net, calib = supernet(), [images(1), images(2)]
    spoil_statistics(net)
    x = images(7, count=8)
    with torch.no_grad(), recalibrate_bn(copy.deepcopy(net), PLAN, calib) as recalibrated:
        targets = targets_with_hits(recalibrated(x, PLAN), 7)
    spoiled = buffers(net)
    assert subnet_accuracy(net, PLAN, [(x, targets)], recalibrate=calib) == 7 / 8
    assert subnet_accuracy(net, PLAN, [(x, targets)]) != 7 / 8  # the spoiled statistics predict otherwise
    assert all(torch.equal(b, spoiled[name]) for name, b in net.named_buffers())


# -- ranking ----------------------------------------------------------------------------------------


def synthetic_truth():
    """All 18 nets, distinct accuracies not ordered by code."""
    return GroundTruth(SPACE, {code: TruthRecord(50.0 + (7 * k) % 18) for k, code in enumerate(CODES)}, "made-up")


def test_ranking_of_scores_equal_to_and_reversed_from_the_truth():
    truth = synthetic_truth()
    costs = {code: float(k) for k, code in enumerate(CODES)}
    agree = ranking_report({c: truth.accuracy(truth.indices_of(c)) for c in CODES}, truth, costs)
    reverse = ranking_report({c: -truth.accuracy(truth.indices_of(c)) for c in CODES}, truth, costs)
    assert agree.overall.count == 18
    assert agree.same_cost.count == 0 and agree.same_cost.kendall_tau is None  # no cost within 5% of 8.5
    assert agree.overall.kendall_tau == pytest.approx(1) and agree.overall.spearman_rho == pytest.approx(1)
    assert reverse.overall.kendall_tau == pytest.approx(-1) and reverse.overall.spearman_rho == pytest.approx(-1)
    json.dumps(agree.to_dict(), allow_nan=False)


def test_ranking_at_equal_cost_uses_the_nets_within_five_percent_of_the_median_cost():
    truth = synthetic_truth()
    # costs 50 (six nets, one 95.5), 100 (six), 200 (six, one 105): median 100, band [95, 105] holds 8 nets
    costs = {code: [50.0, 100.0, 200.0][k // 6] for k, code in enumerate(CODES)}
    costs[CODES[0]], costs[CODES[17]] = 95.5, 105.0  # 105: on the band's edge, inside
    band = {CODES[0], CODES[17], *CODES[6:12]}
    # scores agree with the truth outside the band and are reversed inside it
    scores = {c: truth.accuracy(truth.indices_of(c)) * (-1 if c in band else 1) for c in CODES}
    report = ranking_report(scores, truth, costs)
    assert report.median_cost == 100.0 and report.same_cost.count == 8
    assert report.same_cost.kendall_tau == pytest.approx(-1) and report.same_cost.spearman_rho == pytest.approx(-1)
    assert report.overall.count == 18 and report.overall.kendall_tau > -1
    single = ranking_report({CODES[3]: 0.5}, truth, costs)
    assert single.overall.kendall_tau is None and single.same_cost.spearman_rho is None


def test_ranking_refuses_unknown_or_uncosted_nets():
    truth = GroundTruth(SPACE, {"000": TruthRecord(70.0), "101": TruthRecord(75.0)}, "part.json")
    with pytest.raises(GroundTruthError, match="architecture 011 is not in part.json"):
        ranking_report({"000": 0.1, "011": 0.2}, truth, {"000": 1.0, "011": 2.0})
    with pytest.raises(QualityError, match="have no cost, e.g. 101"):
        ranking_report({"000": 0.1, "101": 0.2}, truth, {"000": 1.0})


def test_sampled_architectures_are_distinct_valid_and_fixed_by_the_seed():
    drawn = sample_archs(SPACE, 10, seed=3)
    assert len({tuple(a) for a in drawn}) == 10 and all(a[0] < 3 and a[1] < 3 and a[2] < 2 for a in drawn)
    assert drawn == sample_archs(SPACE, 10, seed=3) != sample_archs(SPACE, 10, seed=4)
    assert sorted(sample_archs(SPACE, 18, seed=0)) == [[int(d) for d in code] for code in CODES]
    with pytest.raises(QualityError, match="ask for 0 to 18"):
        sample_archs(SPACE, 19)
    big = replace(SPACE, stages=(Stage(8, 14, 1),))  # 3^14 nets: too many to enumerate
    drawn = sample_archs(big, 50, seed=torch.Generator().manual_seed(0))
    assert len({tuple(a) for a in drawn}) == 50 and all(len(a) == 14 and max(a) < 3 for a in drawn)
    assert drawn == sample_archs(big, 50, seed=0)


# -- regret ---------------------------------------------------------------------------------------

# code: (true accuracy, latency ms, FLOPs). Target 10 ms ± 5%: the pool is latency <= 10.5, the band [9.5, 10.5].
REGRET_TABLE = {
    "000": (70.0, 5.0, 100),
    "010": (74.0, 9.5, 200),  # band (on its edge)
    "100": (72.0, 10.0, 300),  # band; the derived net
    "110": (78.0, 10.4, 400),  # band; the best that fits
    "201": (76.0, 10.4, 500),  # band; as slow as 110 with more FLOPs: the largest that fits
    "211": (90.0, 12.0, 600),  # too slow
    "020": (85.0, 11.0, 700),  # too slow
}


def regret_truth(flops=True):
    return GroundTruth(SPACE, {code: TruthRecord(acc, None, flop if flops else None)
                               for code, (acc, _, flop) in REGRET_TABLE.items()}, "regret.json")


def table_latency(indices):
    return REGRET_TABLE["".join(map(str, indices))][1]


def test_regret_against_the_best_net_that_fits_and_the_baselines():
    report = regret_report([1, 0, 0], regret_truth(), table_latency, target_ms=10.0)
    assert report.to_dict() == {
        "target_ms": 10.0, "tolerance": 0.05, "pool_count": 5,
        "derived_code": "100", "derived_accuracy": 72.0, "derived_latency_ms": 10.0, "derived_in_band": True,
        "best_code": "110", "best_accuracy": 78.0, "best_latency_ms": 10.4,
        "regret": 6.0, "percentile": 2 / 5,  # 70 and 72 of 70, 72, 74, 76, 78
        "band_count": 4, "band_mean_accuracy": (74 + 72 + 78 + 76) / 4,
        "largest_code": "201", "largest_accuracy": 76.0, "largest_latency_ms": 10.4,
    }
    json.dumps(report.to_dict(), allow_nan=False)
    # without FLOPs a latency tie goes to the first code
    assert regret_report([1, 0, 0], regret_truth(flops=False), table_latency, 10.0).largest_code == "110"


def test_regret_of_a_derived_net_over_budget_and_of_a_target_nothing_fits():
    over = regret_report([2, 1, 1], regret_truth(), table_latency, target_ms=10.0)
    assert not over.derived_in_band and over.derived_latency_ms == 12.0
    assert over.regret == 78.0 - 90.0 and over.percentile == 1.0
    with pytest.raises(QualityError, match="the fastest takes 5 ms; raise the target"):
        regret_report([1, 0, 0], regret_truth(), table_latency, target_ms=4.0)
    with pytest.raises(GroundTruthError, match="architecture 111 is not in regret.json"):
        regret_report([1, 1, 1], regret_truth(), table_latency, target_ms=10.0)


def test_per_layer_latency_predicts_what_the_latency_model_does():
    table = synthetic_table(SPACE)
    calibrated = LatencyTable({**table.header, "calibration": {"scale": 1.5, "offset": 0.3}}, table.entries)
    for lut in (table, calibrated):
        model = LatencyModel(SPACE, lut)
        latency = per_layer_latency(model)
        for code in CODES:
            indices = [int(d) for d in code]
            assert latency(indices) == pytest.approx(model.of_indices(indices), rel=1e-12)
    plain, scaled = per_layer_latency(LatencyModel(SPACE, table)), per_layer_latency(LatencyModel(SPACE, calibrated))
    assert scaled([1, 1, 1]) == pytest.approx(1.5 * plain([1, 1, 1]) + 0.3)  # the calibration is applied
