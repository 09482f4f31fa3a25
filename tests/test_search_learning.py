"""The parts that make a search learn: fair warmup paths, α's budget, BN recalibrated before the argmax
is scored, and the options reaching the supernet."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from helpers import synthetic_table, tiny32_space
from proxyless.errors import UserError
from proxyless.infra.checkpoint import load_checkpoint
from proxyless.latency.loss import AdaptiveWeight, LatencyLoss
from proxyless.latency.predict import LatencyModel
from proxyless.search.hardware import LatencyTarget
from proxyless.search.loop import MIN_ARCH_STEPS, SearchConfig, Searcher, with_arch_budget
from proxyless.search.objective import LatencyObjective
from proxyless.search.pipeline import load_search_data, search_arch, supernet_of
from proxyless.search.sampling import fair_largest_plan, fair_plan
from proxyless.search.strategies import GradientStrategy
from proxyless.search.supernet import SuperNet
from proxyless.space import dump_space


@pytest.mark.parametrize("sizes", [(3, 3, 3), (7, 6, 7, 2)])
def test_fair_paths_train_every_candidate_once_per_cycle(sizes):
    n = max(sizes)
    for cycle in range(3):
        plans = [fair_plan(sizes, seed=5, step=cycle * n + j) for j in range(n)]
        for layer, size in enumerate(sizes):
            counts = Counter(plan[layer] for plan in plans)
            assert set(counts) == set(range(size))  # every candidate trained in every cycle
            if size == n:
                assert set(counts.values()) == {1}  # strictly once
    assert fair_plan(sizes, 5, 4) == fair_plan(sizes, 5, 4)  # a function of (seed, step): resumes replay it


def test_fair_orders_differ_between_cycles_and_seeds():
    orders = {tuple(tuple(fair_plan((3, 3), seed, cycle * 3 + j)) for j in range(3))
              for seed in range(3) for cycle in range(4)}
    assert len(orders) > 3


def test_arch_budget_scales_with_the_search():
    short = with_arch_budget(SearchConfig(epochs=4), train_images=4000)  # the default search: 62 steps x 3
    long = with_arch_budget(SearchConfig(epochs=8, warmup_epochs=3), train_images=10_000)  # 156 a epoch, 5
    assert (short.arch_every, long.arch_every) == (2, 5)
    assert short.arch_lr > long.arch_lr > 1e-3  # fewer steps, each larger: α can move in either
    steps = 10_000 // 64 * 5 // 5
    assert long.arch_lr == pytest.approx(8.0 / steps) and steps >= MIN_ARCH_STEPS
    given = with_arch_budget(SearchConfig(epochs=8, arch_lr=1e-3, arch_every=5), train_images=10_000)
    assert (given.arch_lr, given.arch_every) == (1e-3, 5)


@pytest.mark.parametrize("changes,flag", [({"weights": "shared"}, "--weights"), ({"sampling": "random"}, "--sampling"),
                                          ({"bn_batches": -1}, "--bn-batches"), ({"arch_every": 0}, "--arch-every"),
                                          ({"arch_lr": float("nan")}, "--arch-lr"), ({"arch_lr": "1e-3"}, "--arch-lr")])
def test_bad_learning_settings_name_their_flag(changes, flag):
    with pytest.raises(UserError, match=flag):
        SearchConfig(**changes)


def _searcher(config: SearchConfig, entangled: bool = False) -> Searcher:
    torch.manual_seed(0)
    net = SuperNet(tiny32_space(), entangled=entangled)
    data = torch.utils.data.TensorDataset(torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,)))
    config = with_arch_budget(config, len(data))
    return Searcher(net, GradientStrategy(net, lr=config.arch_lr), data, data, config, torch.device("cpu"))


def test_warmup_paths_follow_the_sampling_and_then_alpha():
    config = SearchConfig(epochs=3, warmup_epochs=2, batch_size=8, sampling="fair", progress=False)
    searcher = _searcher(config)
    sizes = [len(m.specs) for m in searcher.supernet.mixed_ops()]
    generator = torch.Generator().manual_seed(1)
    assert searcher.weight_plan(1, 3, generator) == fair_plan(sizes, 0, 1 * searcher.steps_per_epoch + 3)
    with torch.no_grad():
        for mixed in searcher.supernet.mixed_ops():
            mixed.alpha[-1] = 50.0  # after warmup the path follows p: here the last candidate everywhere
    assert searcher.weight_plan(2, 0, generator) == [s - 1 for s in sizes]


def test_fair_largest_warmup_alternates_the_path_with_every_weight_and_a_fair_cycle():
    config = SearchConfig(epochs=3, warmup_epochs=2, batch_size=8, sampling="fair-largest", progress=False)
    searcher = _searcher(config, entangled=True)
    mixed_ops = searcher.supernet.mixed_ops()
    sizes = [len(m.specs) for m in mixed_ops]
    # the largest candidate holds every conv weight of the layer (each candidate keeps its own BNs): its
    # path trains all of them, and no other candidate has as many
    for mixed, index in zip(mixed_ops, searcher.largest):
        counts = [sum(p.numel() for p in mixed.standalone(k).parameters()) for k in range(len(mixed.specs))]
        assert counts[index] == max(counts) and str(mixed.specs[index]).endswith("_e6")
        convs = [sum(p.numel() for p in module.parameters() if p.ndim > 1)
                 for module in (mixed.standalone(index), mixed.shared)]
        assert convs[0] == convs[1]
    generator = torch.Generator().manual_seed(1)
    plans = [searcher.weight_plan(0, step, generator) for step in range(2 * max(sizes))]
    assert all(plan == searcher.largest for plan in plans[0::2])
    fair = plans[1::2]  # between them one whole fair cycle: every candidate of every layer once
    for layer, size in enumerate(sizes):
        assert {plan[layer] for plan in fair} == set(range(size))
    assert fair_largest_plan(sizes, searcher.largest, 0, 7) == fair_plan(sizes, 0, 3)


@pytest.mark.parametrize("sampling", ["fair", "fair-largest", "uniform"])
def test_full_depth_weights_never_train_an_identity_but_the_arch_step_still_tries_one(sampling):
    config = SearchConfig(epochs=3, warmup_epochs=2, batch_size=8, sampling=sampling, full_depth_weights=True,
                          progress=False)
    searcher = _searcher(config, entangled=True)
    mixed_ops = searcher.supernet.mixed_ops()
    identities = [{i for i in range(len(m.specs)) if m.is_zero(i)} for m in mixed_ops]
    assert any(identities)  # the tiny space has optional layers, else this proves nothing
    generator = torch.Generator().manual_seed(1)
    warmup = [searcher.weight_plan(epoch, step, generator) for epoch in (0, 1) for step in range(14)]
    for layer, (mixed, skipped) in enumerate(zip(mixed_ops, identities)):
        trained = {plan[layer] for plan in warmup}
        assert not trained & skipped
        if sampling != "uniform":  # strictly fair among the rest: every other candidate within the cycles
            assert trained == set(range(len(mixed.specs))) - skipped
    with torch.no_grad():
        for mixed, skipped in zip(mixed_ops, identities):
            for index in skipped:
                mixed.alpha[index] = 50.0  # α all but certain of the identity where a layer has one
    after = [searcher.weight_plan(2, step, generator) for step in range(20)]
    assert all(plan[layer] not in skipped for plan in after for layer, skipped in enumerate(identities))
    pairs = searcher.supernet.sample_two(generator)  # the architecture step samples from every candidate
    assert any(pair.active in skipped for pair, skipped in zip(pairs, identities))


def test_the_argmax_is_scored_with_recalibrated_bn_and_the_statistics_come_back():
    searcher = _searcher(SearchConfig(epochs=2, batch_size=8, bn_batches=2, progress=False, channels_last=False))
    stem_bn = searcher.supernet.stem[1]
    for norm in (m for m in searcher.supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.fill_(5.0)  # statistics that describe no subnet
    plan = searcher.supernet.argmax()
    with searcher.recalibrated(plan, epoch=0):
        inside = stem_bn.running_mean.clone()
        assert not searcher.supernet.training
    images = torch.stack([searcher.train_set[i][0] for i in range(len(searcher.train_set))])
    assert inside.abs().max() < 5.0 and not torch.equal(inside, torch.full_like(inside, 5.0))
    assert inside.abs().max() < images.abs().max() * 10  # measured on real batches, not left at 5
    searcher.evaluate_plan(plan, epoch=0)
    assert torch.equal(stem_bn.running_mean, torch.full_like(stem_bn.running_mean, 5.0))  # restored after
    off = _searcher(replace(searcher.config, bn_batches=0))
    with off.recalibrated(plan, epoch=0):
        assert torch.equal(off.supernet.stem[1].running_mean, torch.zeros_like(inside))  # as trained: untouched


def test_entangled_weights_reach_the_search_and_its_checkpoint(tmp_path):
    data = load_search_data("sample", 32, limit_images=64, progress=False)
    config = SearchConfig(epochs=2, batch_size=32, weights="entangled", sampling="fair", progress=False)
    found = search_arch(tiny32_space(), data, config, out=tmp_path / "run")
    supernet = supernet_of(load_checkpoint(found.run_dir / "checkpoint.pt"), "run")
    assert supernet.entangled and any(m.shared is not None for m in supernet.mixed_ops())


def test_a_checkpoint_rebuilds_only_the_supernet_kind_it_holds(tmp_path):
    data = load_search_data("sample", 32, limit_images=64, progress=False)
    config = SearchConfig(epochs=1, batch_size=32, weights="independent", progress=False)
    found = search_arch(tiny32_space(), data, config, out=tmp_path / "run")
    state = load_checkpoint(found.run_dir / "checkpoint.pt")
    searcher = _searcher(SearchConfig(epochs=1, batch_size=8, progress=False), entangled=True)
    with pytest.raises(UserError, match="holds a supernet with independent weights; resume with --weights independent"):
        searcher.load_state_dict(state, tmp_path / "run")


def test_resuming_a_run_from_before_the_weights_flag_keeps_independent_weights(tmp_path):
    """A run saved without --weights/--sampling ran independent candidates with uniform warmup paths."""
    run, space = tmp_path / "old", tmp_path / "tiny32.yaml"
    dump_space(tiny32_space(), space)
    argv = [sys.executable, "-m", "proxyless", "search", "--space", str(space),
            "--limit-images", "64", "--batch-size", "32", "--epochs", "1", "--no-progress", "--no-measure"]
    first = subprocess.run(argv + ["--out", str(run), "--weights", "independent", "--sampling", "uniform"],
                           capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert first.returncode == 0, first.stderr[-1000:]
    settings = json.loads((run / "config.json").read_text())
    for flag in ("weights", "sampling"):  # as an earlier version saved it
        del settings["command"][flag], settings["search"][flag]
    (run / "config.json").write_text(json.dumps(settings))
    resumed = subprocess.run(argv[:4] + ["--resume", str(run), "--epochs", "2"], capture_output=True, text=True,
                             timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert resumed.returncode == 0, resumed.stderr[-1000:]
    assert "independent weights, uniform warmup paths" in resumed.stderr + resumed.stdout


def test_residual_init_flag_reaches_the_supernet_and_a_run_from_before_it_resumes_zeroed(tmp_path):
    """`--residual-init 0.5` starts the shape-keeping residual branches at that scale (the default: zero, as
    the identity), is saved with the run, and a run saved before the flag existed resumes as zero-init."""
    space = tmp_path / "tiny32.yaml"
    dump_space(tiny32_space(), space)
    argv = [sys.executable, "-m", "proxyless", "search", "--space", str(space), "--limit-images", "64",
            "--batch-size", "32", "--epochs", "1", "--no-progress", "--no-measure", "--lr", "0.001"]
    root = Path(__file__).resolve().parents[1]
    gammas = {}
    for init, scale in (("zero", 0.0), ("0.50", 0.5)):
        run = tmp_path / init
        done = subprocess.run(argv + ["--out", str(run), "--residual-init", init], capture_output=True, text=True,
                              timeout=300, cwd=root)
        assert done.returncode == 0, done.stderr[-1000:]
        settings = json.loads((run / "config.json").read_text())
        assert settings["search"]["residual_init"] == scale
        assert settings["command"]["residual_init"] == ("zero" if init == "zero" else "0.5")  # one spelling
        supernet = supernet_of(load_checkpoint(run / "checkpoint.pt"), str(run))
        gammas[init] = [float(norms.project.weight.detach().abs().mean()) for block, mixed in
                        zip(supernet.blocks, supernet.mixed_ops()) if block.shortcut
                        for norms in mixed.shared.norms.values()]
    assert gammas["zero"] and max(gammas["zero"]) < 0.05  # two steps at lr 0.001
    assert 0.45 < min(gammas["0.50"]) <= max(gammas["0.50"]) < 0.55
    old = tmp_path / "zero" / "config.json"
    settings = json.loads(old.read_text())
    del settings["command"]["residual_init"]  # as a run from before the flag saved it
    settings["search"]["zero_init_residual"] = settings["search"].pop("residual_init")  # ... and the scale
    old.write_text(json.dumps(settings))
    resumed = subprocess.run(argv[:4] + ["--resume", str(tmp_path / "zero"), "--epochs", "2"], capture_output=True,
                             text=True, timeout=300, cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-1000:]  # as zero-init: else its saved settings would differ
    flipped = subprocess.run(argv[:4] + ["--resume", str(tmp_path / "0.50"), "--residual-init", "0.5"],
                             capture_output=True, text=True, timeout=300, cwd=root)
    assert flipped.returncode == 0, flipped.stderr[-1000:]  # the same scale, spelt otherwise
    flipped = subprocess.run(argv[:4] + ["--resume", str(tmp_path / "0.50"), "--residual-init", "zero"],
                             capture_output=True, text=True, timeout=300, cwd=root)
    assert flipped.returncode == 2 and "--residual-init zero (saved: 0.5)" in flipped.stderr  # a run keeps its init


def test_a_two_sided_controller_pushes_a_too_fast_net_up_and_a_slow_one_down():
    weight = AdaptiveWeight(0.1, rate=0.5, low=0.001, high=1000.0, two_sided=True)
    values = [weight.update(80.0, 100.0) for _ in range(40)]  # 20% too fast, every step
    assert values[0] < 0.1 and min(values) < -0.1 and values == sorted(values, reverse=True)  # through zero
    rising = [weight.update(120.0, 100.0) for _ in range(80)]  # now too slow: back up, past zero
    assert rising == sorted(rising) and rising[-1] > 0.1
    one_sided = AdaptiveWeight(0.1, rate=0.5, low=0.001, high=1000.0)
    assert min(one_sided.update(80.0, 100.0) for _ in range(100)) == 0.001  # the floor: never rewards latency


def test_the_two_sided_controller_reaches_the_objective_but_not_a_hinge():
    supernet = SuperNet(tiny32_space())
    model = LatencyModel(supernet.space, synthetic_table())
    for kind, two_sided in (("add", True), ("hinge", False)):
        objective = LatencyObjective(supernet, model, LatencyLoss(kind, target=1e3), two_sided=True)
        assert objective.weight.two_sided is two_sided
        for _ in range(60):  # every net of the space is far under a 1 s target
            objective(supernet, torch.tensor(1.0))
        assert (objective.weight.value < 0) is two_sided


def test_an_unknown_controller_names_its_flag():
    with pytest.raises(UserError, match="--latency-controller must be one-sided or two-sided"):
        LatencyTarget(lut="lut.json", target_ms=10.0, controller="pid")
