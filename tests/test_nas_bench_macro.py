"""The `nas-bench-macro` space is NAS-Bench-Macro's network exactly: the params and MACs of all 6,561
nets equal the benchmark's (an extract of its table in tests/data), so its true accuracies score our
searches."""

from __future__ import annotations

import csv
import functools
import gzip
import itertools
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from proxyless.arch import Arch
from proxyless.latency.keys import all_keys, candidate_keys
from proxyless.latency.measure import MeasureConfig, build_lut
from proxyless.latency.predict import LatencyModel
from proxyless.net import build_net
from proxyless.ops import Skip, parse_op
from proxyless.profile import Profile, SpaceProfile, profile, space_profile
from proxyless.search.mixed_op import TwoPaths
from proxyless.search.supernet import SuperNet
from proxyless.space import NAS_BENCH_MACRO, SpaceError, get_space, load_space

ROOT = Path(__file__).resolve().parent.parent
COSTS = Path(__file__).parent / "data" / "nas_bench_macro_costs.csv.gz"


@functools.cache
def table_costs() -> dict[str, tuple[int, int]]:
    with gzip.open(COSTS, "rt") as f:
        return {row["code"]: (int(row["params"]), int(row["flops"])) for row in csv.DictReader(f)}


@functools.cache
def prices() -> SpaceProfile:
    return space_profile(NAS_BENCH_MACRO)


def indices(code: str) -> list[int]:
    return [int(digit) for digit in code]


def counts(profile_: Profile) -> tuple[int, int]:
    return profile_.params, profile_.macs


def arch_of(code: str) -> Arch:
    layers = NAS_BENCH_MACRO.layers()
    return Arch(NAS_BENCH_MACRO, tuple(layers[i].candidates[int(digit)] for i, digit in enumerate(code)))


def test_every_net_has_the_tables_params_and_macs():
    costs = table_costs()
    assert len(costs) == 3**8
    wrong = [code for code, expected in costs.items() if counts(prices().of_indices(indices(code))) != expected]
    assert wrong == []


@pytest.mark.parametrize("code", ["00000000", "22222222", "20110201"])
def test_built_nets_count_what_the_space_profile_adds_up(code):
    """The additive prices equal a count of the whole built network (so the test above tests the nets)."""
    built = counts(profile(build_net(arch_of(code)), 32))
    assert built == table_costs()[code] == counts(prices().of_indices(indices(code)))


def test_skip_projects_where_the_shape_changes_and_is_the_input_where_kept():
    layers = NAS_BENCH_MACRO.layers()
    assert [slot.is_identity(Skip()) for slot in layers] == [False, True, False, True, True, False, True, True]
    net = build_net(arch_of("00000000"))
    assert sum(isinstance(block, type(layers[0].build(Skip()))) for block in net.blocks) == 3  # the projections
    assert type(net.first_block).__name__ == "Identity"
    assert all(type(m).__name__ != "ReLU6" for m in net.modules())


def test_the_yaml_example_is_the_preset():
    assert load_space(ROOT / "examples" / "nas-bench-macro.yaml") == NAS_BENCH_MACRO == get_space("nas-bench-macro")


def test_skip_with_zero_or_a_bad_activation_is_refused():
    with pytest.raises(SpaceError, match="zero_when_shape_kept: false"):
        replace(NAS_BENCH_MACRO, zero_when_shape_kept=True)
    with pytest.raises(SpaceError, match="'activation' must be one of relu6, relu"):
        replace(NAS_BENCH_MACRO, activation="gelu")


def test_candidate_order_is_the_benchmarks_digits():
    assert NAS_BENCH_MACRO.candidates == (Skip(), parse_op("mb_k3_e3"), parse_op("mb_k5_e6"))
    assert all(len(slot.candidates) == 3 for slot in NAS_BENCH_MACRO.layers())
    assert sum(1 for _ in itertools.product(*(s.candidates for s in NAS_BENCH_MACRO.layers()))) == 6561


def test_a_measured_table_covers_the_space_and_prices_its_projections(tmp_path):
    """`skip` where the shape changes is a timed 1x1 projection with its own key; where kept it is free."""
    config = MeasureConfig(calls_per_sample=1, warmup_calls=1, min_rounds=1, max_rounds=1, threads=1)
    table = build_lut(NAS_BENCH_MACRO, tmp_path / "lut.json", config=config)
    keys = all_keys(NAS_BENCH_MACRO, table.context)
    assert sorted(key.kind for key in keys if key.kind != "mbconv") == [
        "classifier", "feature_mix", "skip", "skip", "skip", "stem"]
    assert {key.act for key in keys} == {"relu"} and len(keys) == 3 + 3 + 6 * 2  # 6 distinct layer shapes
    assert [key is None for key in candidate_keys(NAS_BENCH_MACRO, table.context)[1]] == [True, False, False]
    model = LatencyModel(NAS_BENCH_MACRO, table)
    assert model.of_arch(arch_of("00000000")) < model.of_arch(arch_of("22222222"))


def test_the_supernet_runs_every_kind_of_step_on_the_space():
    supernet = SuperNet(NAS_BENCH_MACRO)
    for module in supernet.modules():  # undo the zero init of residual branches, which have no gate gradient yet
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    x = torch.randn(2, 3, 32, 32)
    assert supernet(x, indices("00000000")).shape == supernet(x, indices("22222222")).shape == (2, 10)
    plan = [TwoPaths(0, 2) if i % 2 else TwoPaths(1, 0) for i in range(8)]  # skip active and inactive
    supernet(x, plan).sum().backward()
    assert all(alpha.grad is not None and alpha.grad.abs().sum() > 0 for alpha in supernet.arch_parameters())
    assert supernet.arch_of(indices("01201120")).op_strings()[:3] == ["skip", "mb_k3_e3", "mb_k5_e6"]
