import itertools
import json
import math

import pytest
import torch

from helpers import tiny_space
from proxyless.arch import Arch
from proxyless.latency import measure
from proxyless.latency.keys import Context, OpKey, all_keys, arch_keys
from proxyless.latency.loss import AdaptiveWeight, LatencyLoss
from proxyless.latency.lut import LatencyTable, LatencyTableError, Stat, load_lut, save_lut
from proxyless.latency.measure import MeasureConfig, build_lut, merge
from proxyless.latency.predict import LatencyModel, expected_latency, predict_latency
from proxyless.search.supernet import SuperNet
from proxyless.space import PROXYLESS_CIFAR, dump_space

TINY = tiny_space()
CONTEXT = Context(batch=1, backend="torch-cpu")


def synthetic_lut(space=TINY, context=CONTEXT):
    """A table with made-up, distinct latencies for every key of `space`."""
    entries = {key: Stat(0.05 + 0.01 * key.kernel * key.expand + 0.001 * key.in_channels + 0.02 * i, 0.0, 3)
               for i, key in enumerate(all_keys(space, context))}
    return LatencyTable({"backend": context.backend, "batch": context.batch, "dtype": context.dtype}, entries)


def test_key_round_trip_and_hashing():
    for key in all_keys(PROXYLESS_CIFAR, Context(batch=32)):
        assert OpKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key
    keys = all_keys(PROXYLESS_CIFAR, Context(batch=32))
    assert len(set(keys)) == len(keys)
    with pytest.raises(ValueError, match="kind must be one of"):
        OpKey("pool", 8, 8, 8)


def test_lut_save_load_round_trip(tmp_path):
    table = synthetic_lut()
    save_lut(table, tmp_path / "lut.json")
    loaded = load_lut(tmp_path / "lut.json")
    assert loaded.entries == table.entries and loaded.header == table.header


@pytest.mark.parametrize("text,message", [
    ("{oops", "not valid JSON"),
    ('{"format": "other"}', "not a proxyless latency table"),
    ('{"format": "proxyless-lut/1", "header": {}}', "must name its 'backend'"),
    ('{"format": "proxyless-lut/1", "header": {"backend": "x"}, "entries": [{"key": {"kind": "stem"}}]}', "entry 0"),
])
def test_malformed_lut_files(tmp_path, text, message):
    (tmp_path / "lut.json").write_text(text)
    with pytest.raises(LatencyTableError, match=message):
        load_lut(tmp_path / "lut.json")


def test_expected_latency_equals_brute_force_over_all_paths():
    torch.manual_seed(0)
    supernet = SuperNet(TINY)
    with torch.no_grad():
        for alpha in supernet.arch_parameters():
            alpha.normal_()
    lut = synthetic_lut()
    model = LatencyModel(TINY, lut)
    probs = [torch.softmax(a.detach().double(), 0) for a in supernet.arch_parameters()]
    brute = 0.0
    for indices in itertools.product(*(range(len(p)) for p in probs)):
        weight = float(torch.prod(torch.stack([p[i] for p, i in zip(probs, indices)])))
        arch = supernet.arch_of(list(indices))
        brute += weight * predict_latency(arch, lut)
        assert model.of_indices(list(indices)) == pytest.approx(predict_latency(arch, lut))
    assert expected_latency(supernet, lut).item() == pytest.approx(brute, rel=1e-12)


def test_expected_latency_gradient_matches_finite_differences():
    model = LatencyModel(TINY, synthetic_lut())
    alphas = [torch.randn(len(lat), dtype=torch.float64, requires_grad=True) for lat in model.per_layer]
    model.expected(alphas).backward()
    eps = 1e-6
    for layer, alpha in enumerate(alphas):
        for k in range(len(alpha)):
            shifted = [a.detach().clone() for a in alphas]
            shifted[layer][k] += eps
            up = model.expected(shifted)
            shifted[layer][k] -= 2 * eps
            down = model.expected(shifted)
            assert alpha.grad[k].item() == pytest.approx(((up - down) / (2 * eps)).item(), abs=1e-9)


def test_zero_costs_nothing_and_fixed_parts_count():
    lut = synthetic_lut()
    slots = TINY.layers()
    with_zero = Arch(TINY, (slots[0].candidates[-1], slots[1].candidates[0], slots[2].candidates[0]))
    keys = arch_keys(with_zero, lut.context)
    assert len(keys) == 4 + 2  # stem, first block, feature mix, classifier + two non-zero layers
    assert predict_latency(with_zero, lut) == pytest.approx(sum(lut.latency(k) for k in keys))


def test_calibration_is_applied_to_whole_network_predictions():
    lut = synthetic_lut()
    arch = Arch(TINY, tuple(slot.candidates[0] for slot in TINY.layers()))
    raw = predict_latency(arch, lut)
    lut.header["calibration"] = {"scale": 1.5, "offset": 0.2}
    assert predict_latency(arch, lut) == pytest.approx(1.5 * raw + 0.2)


def test_lut_for_another_space_or_batch_is_refused_with_missing_keys():
    lut = synthetic_lut()
    with pytest.raises(LatencyTableError, match=r"does not cover space 'proxyless-cifar': \d+ missing entries: stem"):
        LatencyModel(PROXYLESS_CIFAR, lut)
    other_batch = synthetic_lut(context=Context(batch=8))
    other_batch.header["batch"] = 1  # header says batch 1, entries are for batch 8
    with pytest.raises(LatencyTableError, match="proxyless lut build --space tiny"):
        other_batch.check_covers(TINY)


@pytest.mark.parametrize("kind", ["add", "mul", "log", "hinge"])
def test_latency_losses_push_latency_down_above_target(kind):
    loss = LatencyLoss(kind, target=10.0, weight=0.5)
    ce = torch.tensor(1.2)
    expected = torch.tensor(12.0, requires_grad=True)
    loss.combine(ce, expected).backward()
    assert expected.grad > 0
    if kind == "hinge":
        below = torch.tensor(8.0, requires_grad=True)
        loss.combine(ce, below).backward()
        assert below.grad == 0


def test_adaptive_weight_follows_the_gap():
    weight = AdaptiveWeight(value=0.1)
    assert weight.update(latency=12.0, target=10.0) > 0.1
    high = weight.value
    assert weight.update(latency=8.0, target=10.0) < high
    weight = AdaptiveWeight(value=1.0, rate=1.0, max_gap=0.2)
    assert weight.update(latency=100.0, target=10.0) == pytest.approx(math.exp(0.2))
    with pytest.raises(ValueError, match="target latency must be a positive"):
        LatencyLoss("add", target=0.0)


def test_welford_merge_matches_statistics():
    values = [1.0, 2.0, 4.0, 7.0]
    stat = None
    for v in values:
        stat = merge(stat, v)
    assert stat.mean == pytest.approx(3.5) and stat.var == pytest.approx(7.0) and stat.count == 4


def test_build_lut_measures_and_resumes_after_interruption(tmp_path, monkeypatch):
    out = tmp_path / "lut.json"
    config = MeasureConfig(batch=1, calls_per_sample=1, warmup_calls=1, min_rounds=3, max_rounds=3)
    keys = all_keys(TINY, Context(batch=1))
    original = measure.key_timer
    samples = []

    def interrupting_timer(key, cfg):
        timer = original(key, cfg)

        def sample(calls):
            if len(samples) == len(keys) + 2:  # two samples into the second round
                raise KeyboardInterrupt
            samples.append(key)
            return timer(calls)

        return sample

    # 1. a build killed in its second round leaves the complete first round on disk
    monkeypatch.setattr(measure, "key_timer", interrupting_timer)
    with pytest.raises(KeyboardInterrupt):
        build_lut(TINY, out, config=config, progress=False, method="isolated")
    monkeypatch.undo()
    partial = load_lut(out)
    assert set(partial.entries) == set(keys) and all(s.count == 1 for s in partial.entries.values())
    # 2. resumed, every key ends with exactly max_rounds samples in total
    table = build_lut(TINY, out, config=config, progress=False, method="isolated")
    assert set(table.entries) == set(keys)
    assert all(s.count == 3 and s.mean > 0 for s in table.entries.values())
    table.check_covers(TINY)
    # 3. a table for another batch size is not resumed into
    with pytest.raises(LatencyTableError, match="cannot be resumed"):
        build_lut(TINY, out, config=MeasureConfig(batch=8), progress=False, method="isolated")


def test_cli_lut_build_show_and_predict(tmp_path, capsys):
    from proxyless.arch import save_arch
    from proxyless.cli import main

    dump_space(TINY, tmp_path / "space.yaml")
    out = tmp_path / "lut.json"
    assert main(["lut", "build", "--space", str(tmp_path / "space.yaml"), "--out", str(out), "--no-progress"]) == 0
    assert main(["lut", "show", "--lut", str(out)]) == 0
    assert "entries: " in capsys.readouterr().out
    arch = Arch(TINY, tuple(slot.candidates[1] for slot in TINY.layers()))
    save_arch(arch, tmp_path / "arch.json")
    assert main(["latency", "predict", "--arch", str(tmp_path / "arch.json"), "--lut", str(out)]) == 0
    assert f"predicted {predict_latency(arch, load_lut(out)):.2f} ms" in capsys.readouterr().out
    # a table that lacks the network's ops: one line listing what is missing, exit 2
    assert main(["latency", "predict", "--zoo", "mobilenetv2_0.35", "--lut", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lacks" in err and "stem 224x224x3->16" in err
