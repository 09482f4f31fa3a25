"""A family of latency targets on one supernet: each target its own α, strategy and derive rule, the
weights shared; the mixture of weight paths, α swapped in and out, exact resume, the files and the CLI."""

import json

import pytest
import torch
from torch.utils.data import Subset

import proxyless.search.loop as loop
from helpers import synthetic_table, tiny32_space, tiny_space
from proxyless.arch import load_arch
from proxyless.cli import main
from proxyless.data import Splits
from proxyless.latency.lut import LatencyTable, Stat, save_lut
from proxyless.latency.predict import LatencyModel
from proxyless.search.derive import argmax_rule
from proxyless.search.family import Arm, use
from proxyless.search.hardware import LatencyTarget, reachable
from proxyless.search.loop import SearchConfig, Searcher, arch_turns, with_arch_budget
from proxyless.search.pipeline import search_arch, search_family, supernet_of
from proxyless.search.strategies import GradientStrategy, ReinforceStrategy
from proxyless.search.supernet import SuperNet

SPACE = tiny32_space(zero_when_shape_kept=True)


def arms_of(supernet, k, lr=0.05):
    return [Arm(f"{t}ms", GradientStrategy(supernet, lr=lr), argmax_rule) for t in range(1, k + 1)]


def test_use_swaps_an_arms_alpha_in_and_keeps_its_updates():
    supernet = SuperNet(tiny_space())
    arms = arms_of(supernet, 2)
    resting = [a.detach().clone() for a in supernet.arch_parameters()]
    arms[1].alphas = [torch.full_like(a, float(i)) for i, a in enumerate(resting)]
    with use(supernet, arms, 1):
        assert all(torch.equal(a, torch.full_like(a, float(i))) for i, a in enumerate(supernet.arch_parameters()))
        with torch.no_grad():
            supernet.arch_parameters()[0][0] += 5
    assert all(torch.equal(a, b) for a, b in zip(supernet.arch_parameters(), resting))  # arm 0's back
    assert float(arms[1].alphas[0][0]) == 5.0 and float(arms[1].alphas[0][1]) == 0.0  # the update kept


def test_weight_paths_follow_each_target_in_turn_and_arch_steps_teach_every_target():
    """After the warmup, weight step s samples from arm s mod K; arch step j samples from arm j mod K and
    updates every arm's α."""
    supernet = SuperNet(tiny_space(input_size=8, stem_stride=1))
    data = torch.utils.data.TensorDataset(torch.randn(48, 3, 8, 8), torch.randint(0, 4, (48,)))
    config = SearchConfig(epochs=1, warmup_epochs=0, batch_size=8, arch_every=1, arch_lr=0.05, progress=False,
                          channels_last=False)
    arms = arms_of(supernet, 2)
    searcher = Searcher(supernet, arms, data, data, config, torch.device("cpu"))
    def on(candidate, alpha):
        return torch.full_like(alpha, -30.0).index_fill_(0, torch.tensor([candidate]), 30.0)

    with torch.no_grad():  # arm 0 all on candidate 0, arm 1 all on candidate 1
        for alpha in supernet.arch_parameters():
            alpha.copy_(on(0, alpha))
    arms[1].alphas = [on(1, alpha) for alpha in arms[1].alphas]
    plans = [searcher.weight_plan(0, step, torch.Generator().manual_seed(step)) for step in range(6)]
    assert plans == [[0, 0, 0], [1, 1, 1]] * 3
    with torch.no_grad():  # off saturation, where α has gradients
        for alpha in [*supernet.arch_parameters(), *arms[1].alphas]:
            alpha.mul_(0.03)
    before = [[a.clone() for a in supernet.arch_parameters()], [a.clone() for a in arms[1].alphas]]
    for turn in (0, 1):
        searcher.arch_step(0, turn, torch.Generator().manual_seed(turn), arms[turn])
        current = [list(supernet.arch_parameters()), arms[1].alphas]
        for arm in (0, 1):
            assert not all(torch.equal(a, b) for a, b in zip(current[arm], before[arm])), (turn, arm)
            before[arm] = [a.clone() for a in current[arm]]
    assert all(arm.strategy.signal.steps == 2 for arm in arms)


def test_reinforce_arms_take_the_arch_steps_in_turn():
    """REINFORCE's sample is one arm's policy: arch step j updates arm j mod K only."""
    supernet = SuperNet(tiny_space(input_size=8, stem_stride=1))
    data = torch.utils.data.TensorDataset(torch.randn(48, 3, 8, 8), torch.randint(0, 4, (48,)))
    config = SearchConfig(epochs=1, warmup_epochs=0, batch_size=8, arch_every=1, arch_lr=0.05, progress=False,
                          channels_last=False, strategy="reinforce")
    rewards = iter(range(100))  # a new reward each step: the advantage is never zero after the first
    arms = [Arm(f"{t}ms", ReinforceStrategy(supernet, reward=lambda arch, acc: float(next(rewards)), lr=0.05),
                argmax_rule) for t in (1, 2)]
    searcher = Searcher(supernet, arms, data, data, config, torch.device("cpu"))
    assert not searcher.shared_steps
    for step in range(4):  # each arm's first step sets its baseline; its second moves its α
        before = [[a.clone() for a in supernet.arch_parameters()], [a.clone() for a in arms[1].alphas]]
        searcher.arch_step(0, step, torch.Generator().manual_seed(step), arms[step % 2])
        current = [list(supernet.arch_parameters()), arms[1].alphas]
        other = 1 - step % 2
        assert all(torch.equal(a, b) for a, b in zip(current[other], before[other])), step
        if step >= 2:
            assert not all(torch.equal(a, b) for a, b in zip(current[step % 2], before[step % 2])), step


def test_a_two_path_gradient_carries_over_to_another_alpha_exactly():
    """One measurement with arm A's α, carried over to arm B's, is the gradient B's own backward of the
    same paths and batch would give (the family's shared arch step rests on this)."""
    supernet = SuperNet(tiny_space(input_size=8, stem_stride=1))
    images, labels = torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))
    alpha_b = [torch.randn_like(a) for a in supernet.arch_parameters()]
    with torch.no_grad():
        for alpha in supernet.arch_parameters():
            alpha.copy_(torch.randn_like(alpha))
    strategy = GradientStrategy(supernet)
    measured = strategy.measure(supernet, images, labels, torch.Generator().manual_seed(3))
    carried = measured.on(alpha_b)
    with torch.no_grad():
        for alpha, b in zip(supernet.arch_parameters(), alpha_b):
            alpha.copy_(b)
    ce = torch.nn.functional.cross_entropy(supernet(images, measured.plan), labels)  # B's, on the same paths
    direct = torch.autograd.grad(ce, supernet.arch_parameters())
    assert ce.item() == pytest.approx(measured.ce)
    for c, d in zip(carried, direct):
        torch.testing.assert_close(c, d)
    assert any(not torch.allclose(c, a) for c, a in zip(carried, measured.grads))  # B's differs from A's


def test_with_arch_budget_scales_each_targets_step_size_to_its_share_of_the_arch_steps():
    config = SearchConfig(epochs=4, warmup_epochs=1, batch_size=10)
    one, three = with_arch_budget(config, 2000, turns=1), with_arch_budget(config, 2000, turns=3)
    assert one.arch_every == three.arch_every == 5  # 600 weight steps: an arch step every 5th, 120 in all
    assert three.arch_lr == pytest.approx(3 * one.arch_lr, rel=0.02)
    # the two-path gradient teaches every α from each step; REINFORCE and the full gradient take turns
    assert arch_turns(config, 3) == 1
    assert arch_turns(SearchConfig(strategy="reinforce"), 3) == arch_turns(SearchConfig(mode="full"), 3) == 3


@pytest.fixture()
def lut(tmp_path):
    path = tmp_path / "lut.json"
    save_lut(synthetic_table(SPACE), path)
    return path


def sample_subset(splits, train, valid):
    """`train` images of the embedded sample (every class) to train on and `valid` others held out for α."""
    return Splits(Subset(splits.train, range(0, 4000, 4000 // train)[:train]),
                  Subset(splits.train, range(4000, 5000, 1000 // valid)[:valid]), splits.test, splits.classes, 32,
                  "a subset of the sample")


def family_config(epochs=3):
    return SearchConfig(epochs=epochs, warmup_epochs=1, batch_size=32, arch_every=1, progress=False)


def test_a_family_writes_a_net_per_target_and_resumes_exactly(tmp_path, lut, sample_splits, monkeypatch):
    data = sample_subset(sample_splits, 256, 64)
    fastest, slowest = reachable(LatencyModel(SPACE, synthetic_table(SPACE)))
    targets = [LatencyTarget(str(lut), round(t, 2), measure=False, controller="two-sided")
               for t in (fastest * 1.2, (fastest + slowest) / 2, slowest * 0.9)]
    results = search_family(SPACE, data, family_config(), targets=targets, out=tmp_path / "whole")
    run = tmp_path / "whole"
    labels = [r.run_dir.name for r in results]
    assert labels == [f"{t.target_ms:g}ms" for t in targets]
    listing = json.loads((run / "result.json").read_text())["family"]
    assert [m["label"] for m in listing] == labels
    for result, target in zip(results, targets):
        assert result.arch_json.is_file() and (result.run_dir / "arch_history.jsonl").is_file()
        report = json.loads((result.run_dir / "latency.json").read_text())
        assert report == result.latency and report["target_ms"] == target.target_ms
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for label in labels:  # each target's own controller and argmax, logged under its label
        assert {f"valid_top1_argmax@{label}", f"latency_weight@{label}", f"argmax@{label}"} <= set(rows[-1])
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    alphas = [supernet_of(state, str(run), label).arch_parameters() for label in labels]
    for a, b in ((0, 1), (1, 2), (0, 2)):  # every target moved its own α
        assert not all(torch.equal(x, y) for x, y in zip(alphas[a], alphas[b]))

    # stopped after its second epoch's checkpoint, then resumed: the same α, weights and nets
    summary = loop.Searcher.summary

    def stop_after_epoch_2(self, rows):
        if rows["metrics"]["epoch"] == 2:
            raise KeyboardInterrupt
        return summary(self, rows)

    monkeypatch.setattr(loop.Searcher, "summary", stop_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        search_family(SPACE, data, family_config(), targets=targets, out=tmp_path / "split")
    monkeypatch.setattr(loop.Searcher, "summary", summary)
    again = search_family(SPACE, data, family_config(), targets=targets, out=tmp_path / "split", resume=True)
    resumed = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    for name, tensor in state["supernet"].items():
        torch.testing.assert_close(resumed["supernet"][name], tensor, msg=name)
    for whole, split in zip(state["family"], resumed["family"]):
        for a, b in zip(whole["alphas"], split["alphas"]):
            torch.testing.assert_close(a, b)
    assert [r.arch.ops for r in again] == [r.arch.ops for r in results]


def test_family_command_line(tmp_path, lut, capsys):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE.to_dict()))
    out = tmp_path / "run"
    flags = ["--space", str(space_file), "--lut", str(lut), "--epochs", "2", "--batch-size", "32",
             "--limit-images", "320", "--valid-size", "0.05", "--arch-every", "1", "--no-progress", "--no-measure"]
    assert main(["search", *flags, "--target-latency", "2ms", "3ms", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "-- target 2 ms --" in printed and "-- target 3 ms --" in printed
    assert f"wrote {out / '3ms' / 'arch.json'}" in printed
    # derive names the target of a family; without one, one line says which there are
    assert main(["derive", str(out)]) == 2
    error = capsys.readouterr().err
    assert "name the one to derive, one of 2ms, 3ms" in error and len(error.splitlines()) == 1
    before = (out / "3ms" / "arch.json").read_text()
    assert main(["derive", str(out), "--target", "3ms"]) == 0
    assert (out / "3ms" / "arch.json").read_text() == before
    # report: a page per target, with the family's settings and that target's own columns of the metrics
    assert main(["report", str(out)]) == 0
    for label in ("2ms", "3ms"):
        page = (out / label / "report.md").read_text()
        assert f"| target_latency | {label} |" in page and "| argmax_latency_ms |" in page
        assert (out / label / "alpha.png").stat().st_size > 0
    assert main(["report", str(out), "--out", str(tmp_path / "page.md")]) == 2
    assert "a page per target" in capsys.readouterr().err
    # the resume contract covers the targets; one given twice is refused before anything runs
    assert main(["search", "--resume", str(out), "--target-latency", "2ms", "4ms"]) == 2
    assert "--target-latency" in capsys.readouterr().err
    assert main(["search", *flags, "--target-latency", "2ms", "2.0ms", "--out", str(tmp_path / "twice")]) == 2
    assert "each target once" in capsys.readouterr().err and not (tmp_path / "twice").exists()


def test_a_family_across_devices_prices_each_target_on_its_own_table(tmp_path, lut, capsys):
    """`--lut A B --target-latency X Y`: one supernet, target X on table A and Y on table B."""
    slow = synthetic_table(SPACE)
    slow = LatencyTable(slow.header, {key: Stat(3 * s.mean, s.var, s.count) for key, s in slow.entries.items()})
    save_lut(slow, tmp_path / "slow.json")
    models = [LatencyModel(SPACE, synthetic_table(SPACE)), LatencyModel(SPACE, slow)]
    targets = [sum(reachable(model)) / 2 for model in models]  # mid-range on each device: 3x apart
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE.to_dict()))
    flags = ["search", "--space", str(space_file), "--epochs", "2", "--batch-size", "32", "--limit-images", "320",
             "--valid-size", "0.05", "--arch-every", "1", "--no-progress", "--no-measure"]
    out = tmp_path / "run"
    assert main([*flags, "--lut", str(lut), str(tmp_path / "slow.json"),
                 "--target-latency", *(f"{t:.3f}ms" for t in targets), "--out", str(out)]) == 0
    capsys.readouterr()
    saved = json.loads((out / "config.json").read_text())["latency"]
    assert [t["lut"] for t in saved] == [str(lut), str(tmp_path / "slow.json")]
    for target, model in zip(targets, models):
        member = out / f"{round(target, 3):g}ms"
        report = json.loads((member / "latency.json").read_text())
        arch = load_arch(member / "arch.json")
        assert report["predicted_ms"] == pytest.approx(model.of_arch(arch))  # priced on its own device's table
        assert abs(report["predicted_ms"] / target - 1) < 0.5
    # as many tables as targets, or one: anything else is refused before anything runs
    assert main([*flags, "--lut", str(lut), str(lut), "--target-latency", "2ms", "3ms", "4ms",
                 "--out", str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err
    assert "2 tables for 3 targets" in error and len(error.splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_a_one_target_search_is_a_family_of_one(tmp_path, lut, sample_splits, caplog):
    """The same files and metric names as before families existed: no label anywhere."""
    data = sample_subset(sample_splits, 128, 32)
    result = search_arch(SPACE, data, family_config(2), latency=LatencyTarget(str(lut), 2.5, measure=False),
                         out=tmp_path / "one")
    assert result.run_dir == tmp_path / "one" and (result.run_dir / "latency.json").is_file()
    row = json.loads((tmp_path / "one" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "valid_top1_argmax" in row and "latency_weight" in row and not any("@" in key for key in row)
    # the α signal (`search.signal`): in the metrics, and a warning when α followed noise, as in a few steps
    assert "alpha_signal_z" in row and "α mostly followed noise" in caplog.text
    assert "family" not in torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    assert set(json.loads((tmp_path / "one" / "result.json").read_text())) == {"arch", "arch_json", "derived_by",
                                                                                    "alpha_signal_z"}
