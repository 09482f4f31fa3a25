"""Hardware-aware search: the latency objective, its adaptive weight, and `search --lut --target-latency`."""

import itertools
import json
from dataclasses import replace

import pytest
import torch
from PIL import Image

from helpers import synthetic_table, tiny32_space
from proxyless.cli import main
from proxyless.latency.loss import LatencyLoss
from proxyless.latency.lut import save_lut
from proxyless.latency.measure import MeasureConfig, build_lut
from proxyless.latency.predict import LatencyModel
from proxyless.search.budget import most_probable_k_within, most_probable_within
from proxyless.search.hardware import parse_target, reachable
from proxyless.search.objective import LatencyObjective, LatencyReward
from proxyless.search.quality import subnet_accuracy
from proxyless.search.scored_derive import scored_derive
from proxyless.search.strategies import GradientStrategy, ReinforceStrategy
from proxyless.search.supernet import SuperNet

# 32 px and 10 classes: searchable on the embedded CIFAR-10 sample
SPACE = tiny32_space()


def objective_for(supernet, target, kind="add", weight=0.1, rate=0.5):
    model = LatencyModel(SPACE, synthetic_table())
    return LatencyObjective(supernet, model, LatencyLoss(kind, target, weight), rate)


def batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, 32, 32, generator=generator), torch.randint(0, 10, (16,), generator=generator)


def test_parse_target():
    assert parse_target("12ms") == 12.0 and parse_target("0.5 ms") == 0.5 and parse_target("7") == 7.0
    for bad in ("-3ms", "0", "fast", "12s"):
        with pytest.raises(Exception, match="--target-latency must be a positive number of milliseconds"):
            parse_target(bad)


@pytest.mark.parametrize("kind", ["add", "mul", "log", "hinge"])
def test_objective_pushes_alpha_towards_faster_ops_when_above_target(kind):
    torch.manual_seed(0)
    supernet = SuperNet(SPACE)
    model = LatencyModel(SPACE, synthetic_table())
    fastest, slowest = reachable(model)
    objective = objective_for(supernet, target=fastest, kind=kind, weight=1.0, rate=0.0)
    strategy = GradientStrategy(supernet, lr=0.05, arch_loss=objective)
    before = float(model.expected(supernet.arch_parameters()).detach())
    images, targets = batch()
    for step in range(30):
        report = strategy.step(supernet, images, targets, torch.Generator().manual_seed(step))
    after = float(model.expected(supernet.arch_parameters()).detach())
    assert after < before - 0.05 * (slowest - fastest)
    assert {"expected_latency_ms", "argmax_latency_ms", "latency_weight", "arch_ce"} <= set(report)


def test_weight_adapts_from_the_derived_net_and_is_checkpointed():
    supernet = SuperNet(SPACE)
    fastest, slowest = reachable(LatencyModel(SPACE, synthetic_table()))
    derived = objective_for(supernet, 1.0).model.of_indices(supernet.argmax())
    above = objective_for(supernet, target=derived / 1.5, weight=0.1)  # the derived net is too slow
    above(supernet, torch.tensor(2.3))
    assert above.weight.value > 0.1 and above.last["argmax_latency_ms"] == pytest.approx(derived)
    below = objective_for(supernet, target=derived * 1.5, weight=0.1)  # fast enough: relax
    below(supernet, torch.tensor(2.3))
    assert below.weight.value < 0.1
    strategy = GradientStrategy(supernet, arch_loss=above)
    state = strategy.state_dict()
    fresh = objective_for(supernet, target=derived / 1.5, weight=0.1)
    GradientStrategy(supernet, arch_loss=fresh).load_state_dict(state)
    assert fresh.weight.value == above.weight.value


def test_reinforce_reward_discounts_slow_nets_only():
    supernet = SuperNet(SPACE)
    objective = objective_for(supernet, target=1.0, weight=0.5, rate=0.0)
    slow = supernet.arch_of([1] * len(supernet.blocks))
    fast = supernet.arch_of([0] * len(supernet.blocks))
    lat_slow, lat_fast = objective.model.of_arch(slow), objective.model.of_arch(fast)
    objective.loss = LatencyLoss("add", target=(lat_slow + lat_fast) / 2, weight=0.5)
    reward = LatencyReward(objective)
    assert reward(fast, 0.8) == pytest.approx(0.8)
    assert reward(slow, 0.8) == pytest.approx(0.8 * (lat_slow / objective.target) ** -0.5)
    strategy = ReinforceStrategy(supernet, reward=reward)
    report = strategy.step(supernet, *batch(), torch.Generator().manual_seed(0))
    assert "sampled_latency_ms" in report and strategy.state_dict()["objective"] == {"weight": 0.5}


def test_search_with_a_measured_table_reports_predicted_and_measured(tmp_path, capsys):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE.to_dict()))
    config = MeasureConfig(batch=8, threads=1, calls_per_sample=2, warmup_calls=1, min_rounds=2, max_rounds=2)
    table = build_lut(SPACE, tmp_path / "lut.json", "torch-cpu", config, progress=False)
    fastest, slowest = reachable(LatencyModel(SPACE, table))
    target = (fastest + slowest) / 2
    out = tmp_path / "run"
    code = main(["search", "--space", str(space_file), "--lut", str(tmp_path / "lut.json"),
                 "--target-latency", f"{target:.4f}ms", "--epochs", "2", "--warmup-epochs", "1",
                 "--batch-size", "32", "--limit-images", "320", "--valid-size", "0.05", "--arch-every", "1",
                 "--arch-lr", "0.05", "--no-progress", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "latency: predicted" in printed and "latency: measured" in printed
    result = json.loads((out / "latency.json").read_text())
    assert result["target_ms"] == pytest.approx(target, rel=1e-3) and result["measured_ms"] > 0
    assert fastest <= result["predicted_ms"] <= slowest
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "latency_weight" in rows[-1] and "argmax_latency_ms" in rows[-1]
    # `derive` re-derives under the same target rule from the checkpoint
    assert main(["derive", str(out), "--out", str(tmp_path / "again.json")]) == 0
    assert f"derived by {result['derived_by']}" in capsys.readouterr().out
    assert (tmp_path / "again.json").read_text() == (out / "arch.json").read_text()
    # `report` turns the run into a page: settings, layer table, latency, per-epoch metrics, two figures
    assert main(["report", str(out)]) == 0
    page = (out / "report.md").read_text()
    for section in ("## Settings", "## Derived architecture", "## Latency", "## Per epoch", "![alpha](alpha.png)"):
        assert section in page
    assert f"- measured: {result['measured_ms']:.2f}" in page and f"| {SPACE.num_layers - 1} |" in page
    for figure in ("arch.png", "alpha.png"):
        with Image.open(out / figure) as image:
            assert image.size[0] > 300 and image.size[1] > 100
    # derived again in place: latency.json follows, and drops the timing of a net it no longer describes
    assert main(["derive", str(out)]) == 0
    again = json.loads((out / "latency.json").read_text())
    assert again["predicted_ms"] == pytest.approx(result["predicted_ms"]) and "measured_ms" not in again
    # --measured-derive times the derived net here and records every net it timed
    assert main(["derive", str(out), "--measured-derive"]) == 0
    assert "latency: derived net measured" in capsys.readouterr().out
    timed = json.loads((out / "latency.json").read_text())
    assert 1 <= len(timed["measured_derive"]) <= 3 and timed["measured_ms"] > 0 and timed["backend"] == "torch-cpu"
    assert timed["measured_ms"] in [r["measured_ms"] for r in timed["measured_derive"]]
    assert timed["table_scale"] in [r["table_scale"] for r in timed["measured_derive"]]
    assert timed["derived_by"].startswith(("argmax", "most probable"))


def test_report_of_an_unfinished_run_names_the_fix(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["report", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "has no arch.json" in error and "proxyless search --resume" in error and len(error.splitlines()) == 1
    assert main(["report", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("extra, message", [
    (["--target-latency", "10ms"], "--lut and --target-latency go together"),
    (["--lut", "LUT", "--target-latency", "0.000001ms"], "out of reach"),
    (["--lut", "LUT", "--target-latency", "abc"], "positive number of milliseconds"),
    (["--lut", "LUT", "--target-latency", "1ms", "--latency-weight", "0"], "--latency-weight must be positive"),
    (["--lut", "LUT", "--target-latency", "2ms", "--measured-derive", "--no-measure"], "cannot go with --no-measure"),
    (["--lut", "LUT", "--target-latency", "2ms", "--derive-top", "-1"], "--derive-top must be 0 (off) or a number"),
])
def test_search_latency_bad_input(extra, message, tmp_path, capsys):
    save_lut(synthetic_table(), tmp_path / "lut.json")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE.to_dict()))
    argv = ["search", "--space", str(space_file), "--limit-images", "64", "--out", str(tmp_path / "run"),
            *[str(tmp_path / "lut.json") if a == "LUT" else a for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_table_for_another_space_is_refused(tmp_path, capsys):
    other = replace(SPACE, feature_mix_channels=64)
    save_lut(synthetic_table(other), tmp_path / "lut.json")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE.to_dict()))
    assert main(["search", "--space", str(space_file), "--lut", str(tmp_path / "lut.json"), "--target-latency", "1ms",
                 "--limit-images", "64", "--out", str(tmp_path / "run")]) == 2
    assert "does not cover" in capsys.readouterr().err


def random_alpha_supernet(seed: int) -> SuperNet:
    """A supernet whose α are drawn from N(0, 1): p far from uniform, different per layer."""
    torch.manual_seed(seed)
    supernet = SuperNet(SPACE)
    with torch.no_grad():
        for alpha in supernet.arch_parameters():
            alpha.normal_()
    return supernet


def nets_in_band(model, probs, low, high) -> list[tuple[float, list[int]]]:
    """(Σ log p, indices) of every architecture with predicted latency in [low, high], most probable first."""
    every = itertools.product(*(range(len(p)) for p in probs))
    return sorted(((sum(float(torch.log(p[i])) for p, i in zip(probs, indices)), list(indices))
                   for indices in every if low <= model.of_indices(list(indices)) <= high), reverse=True)


@pytest.mark.parametrize("band", [(0.45, 0.55), (0.2, 0.3), (0.7, 0.8)])
def test_most_probable_within_band_matches_brute_force(band):
    supernet = random_alpha_supernet(1)
    model = LatencyModel(SPACE, synthetic_table())
    fastest, slowest = reachable(model)
    low, high = (fastest + f * (slowest - fastest) for f in band)
    in_band = nets_in_band(model, supernet.probs(), low, high)
    found = most_probable_within(model, supernet.probs(), low, high)
    assert found == (in_band[0][1] if in_band else None)
    assert most_probable_within(model, supernet.probs(), 0.0, fastest * 0.5) is None


@pytest.mark.parametrize("band", [(0.45, 0.55), (0.6, 0.75), (0.0, 1.0)])
def test_k_most_probable_within_band_match_brute_force_in_order(band):
    supernet = random_alpha_supernet(2)
    model = LatencyModel(SPACE, synthetic_table())
    fastest, slowest = reachable(model)
    low, high = (fastest + f * (slowest - fastest) for f in band)
    probs = supernet.probs()
    in_band = nets_in_band(model, probs, low, high)
    assert len(in_band) > 4  # enough for k to matter
    assert most_probable_k_within(model, probs, low, high, k=4) == [indices for _, indices in in_band[:4]]
    assert len(most_probable_k_within(model, probs, low, high, k=len(in_band) + 5)) == len(in_band)
    assert most_probable_k_within(model, probs, 0.0, fastest * 0.5, k=3) == []


def test_scored_derive_keeps_the_best_scored_of_the_band_s_most_probable_nets():
    supernet = random_alpha_supernet(3)
    model = LatencyModel(SPACE, synthetic_table())
    fastest, slowest = reachable(model)
    objective = objective_for(supernet, target=(fastest + slowest) / 2)
    batches = [batch(seed) for seed in range(3)]
    indices, how = scored_derive(objective, batches, k=5)(supernet)
    rule, _ = objective.derive(supernet)
    candidates = most_probable_k_within(model, supernet.probs(), *objective.derive_band(), k=5)
    pool = candidates + ([rule] if rule not in candidates else [])
    scores = {tuple(c): subnet_accuracy(supernet, c, batches, memory_format=torch.channels_last) for c in pool}
    assert len(pool) > 1 and tuple(indices) in scores and scores[tuple(indices)] == max(scores.values())
    assert objective.on_target(model.of_indices(indices)) and "valid top-1" in how
    with pytest.raises(ValueError, match="k must be at least 1"):
        scored_derive(objective, batches, k=0)


def table_and_space(tmp_path):
    """The synthetic table and the tiny space written under tmp_path, and a target halfway across its reach."""
    save_lut(synthetic_table(), tmp_path / "lut.json")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE.to_dict()))
    fastest, slowest = reachable(LatencyModel(SPACE, synthetic_table()))
    return space_file, (fastest + slowest) / 2


def test_search_with_derive_top_scores_the_band_and_says_so(tmp_path, capsys):
    space_file, middle = table_and_space(tmp_path)
    out = tmp_path / "run"
    assert main(["search", "--space", str(space_file), "--lut", str(tmp_path / "lut.json"), "--target-latency",
                 f"{middle:.4f}ms", "--derive-top", "3", "--no-measure", "--epochs", "2",
                 "--batch-size", "32", "--limit-images", "128", "--valid-size", "0.05", "--no-progress",
                 "--out", str(out)]) == 0
    report = json.loads((out / "latency.json").read_text())
    assert "valid top-1" in report["derived_by"] and report["on_target"]
    assert json.loads((out / "config.json").read_text())["latency"]["derive_top"] == 3
    # derive has no data to score with: it applies the latency rule and says so
    capsys.readouterr()
    assert main(["derive", str(out), "--out", str(tmp_path / "again.json")]) == 0
    assert "the rule alone" in capsys.readouterr().out


def identities(supernet, indices) -> int:
    return sum(mixed.is_skip(i) for mixed, i in zip(supernet.mixed_ops(), indices))


def test_deepest_derive_keeps_the_most_layers_in_the_band_then_the_most_probable():
    supernet = random_alpha_supernet(4)
    with torch.no_grad():
        for mixed in supernet.mixed_ops():
            for i in range(len(mixed.specs)):
                if mixed.is_skip(i):
                    mixed.alpha[i] += 3.0  # α sure of every skip: the band rule drops layers
    model = LatencyModel(SPACE, synthetic_table())
    fastest, slowest = reachable(model)
    differ = 0
    for fraction in [f / 50 for f in range(10, 46)]:
        target = fastest + fraction * (slowest - fastest)
        deepest_rule = LatencyObjective(supernet, model, LatencyLoss("add", target, 0.1), 0.5, deepest=True)
        kept, how = deepest_rule.derive(supernet)
        in_band = nets_in_band(model, supernet.probs(), *deepest_rule.derive_band())
        if not in_band:
            continue
        fewest = min(identities(supernet, indices) for _, indices in in_band)
        assert kept == next(indices for _, indices in in_band if identities(supernet, indices) == fewest)
        assert deepest_rule.on_target(model.of_indices(kept)) and "deepest" in how
        by_alpha, _ = objective_for(supernet, target).derive(supernet)
        assert identities(supernet, by_alpha) >= identities(supernet, kept)
        differ += identities(supernet, by_alpha) > identities(supernet, kept)
        # the scored derive draws its candidates the same way: every one of them among the deepest
        candidates = most_probable_k_within(model, supernet.probs(), *deepest_rule.derive_band(), k=3,
                                            bonus=deepest_rule.depth_bonus(supernet))
        assert candidates[0] == kept and all(identities(supernet, c) == fewest for c in candidates)
    assert differ >= 1  # a target where the band rule drops a layer that the deepest rule keeps


def test_search_and_derive_take_the_derive_depth(tmp_path, capsys):
    space_file, middle = table_and_space(tmp_path)
    out = tmp_path / "run"
    common = ["--space", str(space_file), "--no-measure", "--epochs", "2", "--batch-size", "32", "--limit-images",
              "128", "--valid-size", "0.05", "--no-progress"]
    assert main(["search", *common, "--lut", str(tmp_path / "lut.json"), "--target-latency",
                 f"{middle:.4f}ms", "--derive-depth", "deepest", "--out", str(out)]) == 0
    assert "deepest" in json.loads((out / "latency.json").read_text())["derived_by"]
    assert json.loads((out / "config.json").read_text())["latency"]["derive_depth"] == "deepest"
    capsys.readouterr()
    assert main(["derive", str(out), "--derive-depth", "alpha", "--out", str(tmp_path / "alpha.json")]) == 0
    assert "deepest" not in capsys.readouterr().out  # the flag overrides the search's own rule
    assert main(["derive", str(out), "--out", str(tmp_path / "again.json")]) == 0
    assert "deepest" in capsys.readouterr().out  # without it, the search's own
    plain = tmp_path / "plain"
    assert main(["search", *common, "--out", str(plain)]) == 0
    assert main(["derive", str(plain), "--derive-depth", "deepest"]) == 2
    assert "--derive-depth" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # argparse: the choices named in one line
        main(["search", *common, "--derive-depth", "widest", "--out", str(tmp_path / "bad")])
    assert refused.value.code == 2 and "'alpha', 'deepest'" in capsys.readouterr().err
