"""Tables timed in context (`latency.context`) and whole networks timed paired with a reference."""

import itertools
from dataclasses import replace

import pytest
import torch

from helpers import tiny_space
from proxyless.errors import UserError
from proxyless.latency import context as context_module
from proxyless.latency import measure as measure_module
from proxyless.latency.context import build_context_lut, covering_archs, kernel_times_by_run, net_parts, resolve_method
from proxyless.latency.keys import Context, all_keys, arch_keys
from proxyless.latency.lut import LatencyTableError, load_lut
from proxyless.latency.measure import MeasureConfig, Reference, build_lut, measure_archs, reference_arch
from proxyless.net import build_net
from proxyless.profile import count_params
from proxyless.space import PROXYLESS_IMAGENET
from proxyless.tree.space import TREE_TINY

TINY = tiny_space(zero_when_shape_kept=True)
QUICK = MeasureConfig(batch=1, threads=1, calls_per_sample=2, warmup_calls=1, min_rounds=2, max_rounds=3)


def test_every_cycle_of_the_covering_set_holds_every_candidate_of_every_layer():
    archs = covering_archs(PROXYLESS_IMAGENET, cycles=2, seed=3)
    width = max(len(slot.candidates) for slot in PROXYLESS_IMAGENET.layers())
    assert len(archs) == 2 * width
    for cycle in (archs[:width], archs[width:]):
        for layer, slot in enumerate(PROXYLESS_IMAGENET.layers()):
            assert {arch.ops[layer] for arch in cycle} == set(slot.candidates), layer
    assert archs[0].ops != archs[width].ops  # neighbours drawn afresh in every cycle


def test_the_timed_parts_of_a_network_are_its_forward_pass_and_carry_its_keys():
    arch = covering_archs(TINY, cycles=1)[1]
    net = build_net(arch).eval()
    context = Context(batch=2)
    parts = net_parts(net, context)
    x = torch.randn(2, 3, 16, 16)
    h = x
    for part, _ in parts:
        h = part(h)
    torch.testing.assert_close(h, net(x))
    keys = [key for _, key in parts if key is not None]
    assert sorted(keys) == sorted(arch_keys(arch, context))


def test_auto_times_in_context_where_it_can_and_says_why_not_elsewhere():
    tree = TREE_TINY
    assert resolve_method(TINY, "torch-cpu") == "context"
    assert resolve_method(TINY, "onnxruntime") == "context" and resolve_method(TINY, "torch-cuda") == "isolated"
    assert resolve_method(tree, "torch-cpu") == "isolated"
    assert resolve_method(TINY, "torch-cpu", "isolated") == "isolated"
    with pytest.raises(UserError, match="not torch-cuda; build this table with --method isolated"):
        resolve_method(TINY, "torch-cuda", "context")
    with pytest.raises(UserError, match="tree-cell space"):
        resolve_method(tree, "torch-cpu", "context")
    with pytest.raises(UserError, match="choose one of auto, context, isolated"):
        resolve_method(TINY, "torch-cpu", "sideways")


def test_a_context_table_covers_the_space_and_resumes_on_its_reference_scale(tmp_path, monkeypatch):
    out = tmp_path / "lut.json"
    config = replace(QUICK, min_rounds=6, max_rounds=6)  # a round gives every key 3 samples or more: 2 rounds
    keys = all_keys(TINY, Context(batch=1))
    original, timed = context_module.time_parts, []

    def interrupting(parts, x, calls):
        if len(timed) == len(covering_archs(TINY)) + 2:  # two networks into the second round
            raise KeyboardInterrupt
        timed.append(1)
        return original(parts, x, calls)

    # 1. killed in its second round: the whole first round is on disk, with the reference's scale
    monkeypatch.setattr(context_module, "time_parts", interrupting)
    with pytest.raises(KeyboardInterrupt):
        build_context_lut(TINY, out, config=config, progress=False)
    monkeypatch.undo()
    partial = load_lut(out)
    assert set(partial.entries) == set(keys) and partial.header["timing"] == "context"
    reference = partial.header["reference"]
    assert reference["ms"] > 0 and reference["arch"] == list(reference_arch(TINY).op_strings())
    # 2. resumed: on the same scale, each key to at least min_rounds samples, all of them positive
    table = build_lut(TINY, out, config=config, progress=False)
    assert table.header["reference"] == reference
    assert all(table.entries[key].count >= max(config.min_rounds, partial.entries[key].count + 1) for key in keys)
    assert all(stat.mean > 0 for stat in table.entries.values())
    table.check_covers(TINY)
    # 3. not resumed as the other kind of table
    with pytest.raises(LatencyTableError, match="cannot be resumed isolated"):
        build_lut(TINY, out, config=config, progress=False, method="isolated")


def test_a_paired_measurement_shares_its_reference_across_calls():
    reference = Reference(reference_arch(TINY), "torch-cpu", QUICK)
    (same,) = measure_archs([reference_arch(TINY)], "torch-cpu", QUICK, progress=False, reference=reference)
    after_one, scale = len(reference.samples), reference.ms
    other = covering_archs(TINY, cycles=1)[:2]
    measure_archs(other, "torch-cpu", QUICK, progress=False, reference=reference)
    assert after_one >= QUICK.min_rounds and len(reference.samples) >= after_one + 2 * QUICK.min_rounds
    assert reference.ms == scale and same.mean > 0 and same.count >= QUICK.min_rounds  # one scale for both calls
    unpaired = replace(QUICK, paired=False)
    assert measure_archs(other, "torch-cpu", unpaired, progress=False)[0].mean > 0


def test_pairing_cancels_a_machine_that_slows_down_between_calls(monkeypatch):
    """On a machine 2% slower at every call (a timer's time: its net's parameter count), two nets measured
    in separate calls keep their true ratio when paired with one reference, and lose it unpaired."""
    calls = itertools.count()

    def drifting_timer(net, shape, backend, threads, warmup_calls):
        size = count_params(net)
        return lambda n: size * 1.02 ** next(calls)

    monkeypatch.setattr(measure_module, "make_timer", drifting_timer)
    first, second = reference_arch(TINY), covering_archs(TINY, cycles=1)[0]
    true_ratio = count_params(build_net(second)) / count_params(build_net(first))
    assert abs(true_ratio - 1) > 0.05  # two nets of different cost
    config = replace(QUICK, min_rounds=6, max_rounds=6)
    reference = Reference(reference_arch(TINY), "torch-cpu", config, window=1)
    (a,) = measure_archs([first], "torch-cpu", config, progress=False, reference=reference)
    (b,) = measure_archs([second], "torch-cpu", config, progress=False, reference=reference)
    assert b.mean / a.mean == pytest.approx(true_ratio, rel=1e-9)
    assert a.mean == pytest.approx(reference.ms * 1.02, rel=1e-9)  # the reference against itself, one call apart
    unpaired = replace(config, paired=False)
    (a,) = measure_archs([first], "torch-cpu", unpaired, progress=False)
    (b,) = measure_archs([second], "torch-cpu", unpaired, progress=False)
    assert b.mean / a.mean > true_ratio * 1.1  # six calls later, 12% slower


def test_a_measurement_runs_at_its_tables_threads_and_hands_back_the_callers(monkeypatch):
    seen = []

    def counting_timer(net, shape, backend, threads, warmup_calls):
        return lambda n: seen.append(torch.get_num_threads()) or 1.0

    monkeypatch.setattr(measure_module, "make_timer", counting_timer)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a search training on two threads, e.g. before a measured derive
    try:
        measure_archs([reference_arch(TINY)], "torch-cpu", QUICK, progress=False)  # QUICK: one thread
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_onnxruntime_kernels_go_to_the_block_they_were_exported_from(tmp_path):
    owners = {"node_Conv_1": 0, "hardtanh": 0, "hardtanh_1": 2, "getitem_6": 2, "node_Gemm_9": 4}
    events = [{"name": "model_run", "ts": 0, "dur": 100}, {"name": "model_run", "ts": 200, "dur": 100}]
    for start in (0, 200):  # per run: a fused stem, a block's fused conv, a reorder after it, the head
        events += [{"cat": "Node", "name": f"{kernel}_kernel_time", "ts": start + ts, "dur": dur}
                   for ts, kernel, dur in ((1, "hardtanh_nchwc", 10), (20, "hardtanh_1_nchwc", 30),
                                           (55, "ReorderOutput_token_3", 5), (70, "node_Gemm_9", 2))]
    events.append({"cat": "Node", "name": "hardtanh_1_nchwc_fence_before", "ts": 20, "dur": 0})
    assert kernel_times_by_run(events, owners, 5) == [pytest.approx([0.01, 0.0, 0.035, 0.0, 0.002])] * 2


def test_an_onnxruntime_table_is_timed_in_context_from_the_kernel_profile(tmp_path):
    table = build_lut(TINY, tmp_path / "ort.json", "onnxruntime", QUICK, progress=False)
    assert table.header["timing"] == "context" and "kernel profile" in table.header["method"]
    assert table.header["session_config"] == {"session.intra_op.allow_spinning": "0"}  # what a deployment sets
    table.check_covers(TINY)
    assert all(stat.mean > 0 for stat in table.entries.values())
    assert list(tmp_path.iterdir()) == [tmp_path / "ort.json"]  # the profiles went to a scratch directory


def test_timing_sessions_do_not_spin_their_worker_threads():
    from proxyless.latency.runners import export_onnx, onnxruntime_session

    session = onnxruntime_session(export_onnx(torch.nn.Conv2d(3, 4, 3), torch.randn(1, 3, 8, 8)), threads=2)
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_an_export_without_name_scopes_is_refused_rather_than_priced_in_the_head():
    import onnx

    from proxyless.latency.context import name_owners
    from proxyless.latency.runners import export_onnx

    arch = covering_archs(TINY, cycles=1)[0]
    model = onnx.load_from_string(export_onnx(build_net(arch).eval(), torch.randn(1, 3, 16, 16)))
    assert set(name_owners(model.SerializeToString(), len(arch.ops))) >= {node.name for node in model.graph.node}
    for node in model.graph.node:
        del node.metadata_props[:]
    with pytest.raises(UserError, match="--method isolated"):
        name_owners(model.SerializeToString(), len(arch.ops))
