"""Search over tree cells (issue 18, part 3): the space as data, the supernet with a binarized mixed op on
every searched edge, latency tables of edge ops, and searches with both strategies for a latency target on
the embedded sample whose derived net trains; on `tree-tiny` (2 blocks, 4 searched edges each)."""

import copy
import json

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import Subset

from helpers import expected_alpha_grad, trained_like
from proxyless.arch_kinds import any_arch_from_dict, get_any_space, load_any_arch
from proxyless.cli import main
from proxyless.data import Splits
from proxyless.latency.keys import Context, all_keys
from proxyless.latency.lut import LatencyTable, LatencyTableError, Stat, load_lut, save_lut
from proxyless.latency.measure import MeasureConfig
from proxyless.latency.predict import LatencyModel
from proxyless.latency.tree_keys import TreeKey
from proxyless.latency.validate import random_archs, validate_lut
from proxyless.net import build_net
from proxyless.search import loop
from proxyless.search.hardware import LatencyTarget, reachable
from proxyless.search.loop import SearchConfig
from proxyless.search.mixed_op import MixedOp, TwoPaths
from proxyless.search.pipeline import derive_from_run, search_arch, supernet_of
from proxyless.search.strategies import GradientStrategy, frozen
from proxyless.space import SpaceError
from proxyless.train import TrainConfig, train_net
from proxyless.tree.space import PROXYLESS_CIFAR_TREE, TREE_TINY, TreeSpace
from proxyless.tree.supernet import SuperBranch, TreeSuperNet, inherit_tree_weights
from proxyless.zoo import get_zoo_arch

# a made-up cost per edge op (ms), so that a search has something to trade; the fixed parts cost 1 ms each
EDGE_MS = {"sep_k3": 0.3, "sep_k5": 0.5, "conv_k3": 0.8, "avg_k3": 0.1, "max_k3": 0.1, "identity": 0.0}


def synthetic_tree_table(space: TreeSpace = TREE_TINY) -> LatencyTable:
    entries = {key: Stat(EDGE_MS[key.op] if key.kind == "edge" else 1.0, 0.0, 3)
               for key in all_keys(space, Context(batch=1))}
    return LatencyTable({"backend": "torch-cpu", "batch": 1, "dtype": "float32", "threads": 1}, entries)


def subset(splits: Splits, train: int, valid: int) -> Splits:
    """`train` images of the embedded sample (every class) and `valid` others held out for α."""
    return Splits(Subset(splits.train, range(0, 4000, 4000 // train)[:train]),
                  Subset(splits.train, range(4000, 5000, 1000 // valid)[:valid]), splits.test, splits.classes, 32,
                  "a subset of the sample")


# ---------------------------------------------------------------- the space


def test_space_file_round_trip_and_searched_edges(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(TREE_TINY.to_dict()))
    assert get_any_space(str(path)) == TREE_TINY == TreeSpace.from_dict(json.loads(json.dumps(TREE_TINY.to_dict())))
    layers = TREE_TINY.layers()
    assert [(e.block, e.path) for e in layers] == [(b, p) for b in (0, 1) for p in ("0", "0.0", "0.1", "1")]
    # `identity` cannot take the stride of block 1's root edges: it is left out there only
    assert [str(op) for op in layers[3].candidates] == ["avg_k3", "max_k3", "sep_k3", "identity"]
    assert [str(op) for op in layers[7].candidates] == ["avg_k3", "max_k3", "sep_k3"]
    arch = TREE_TINY.arch_of([2, 1, 0, 3, 0, 2, 1, 2], name="n")
    assert TREE_TINY.indices_of(arch) == [2, 1, 0, 3, 0, 2, 1, 2]
    assert any_arch_from_dict(arch.to_dict()) == arch
    assert arch.cells[1].describe() == "add(sep_k3 > add(identity, identity), sep_k3)"


@pytest.mark.parametrize("change, message", [
    ({"cell": {"branches": [{"edges": ["sep_k4"]}]}}, r"cell.branches\[0\]: edge op kernel must be odd"),
    ({"cell": {"branches": [{"edge": "conv_k3", "edges": ["sep_k3"]}]}}, "a branch is {edges: "),
    ({"cell": {"split": "copy", "branches": [{"edges": ["sep_k3"]}, {"edges": ["max_k3"]}]}}, "needs 'split'"),
    ({"cell": {"branches": [{"edges": ["identity", "max_k3"], "expand": 2,
                             "child": {"branches": [{"edge": "conv_k1"}]}}]}},
     "block 0 edge 0 .*none of identity, max_k3 fits there; add a conv"),
    ({"backbone": {"alphaa": 3}}, "unknown field 'alphaa'"),
    ({"format": "proxyless-tree-space/9"}, "unsupported format"),
])
def test_bad_tree_space_file_is_one_line_naming_the_place(tmp_path, capsys, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TREE_TINY.to_dict(), **change}))
    with pytest.raises(SpaceError, match=message):
        get_any_space(str(path))
    assert main(["search", "--space", str(path), "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and str(path) in error
    assert not (tmp_path / "run").exists()


def test_the_published_net_is_a_net_of_the_paper_space():
    published = get_zoo_arch("proxyless_cifar")
    indices = PROXYLESS_CIFAR_TREE.indices_of(published)
    assert len(indices) == 54 * 12  # 12 searched edges per cell; the widening grouped conv and the halves fixed
    assert PROXYLESS_CIFAR_TREE.arch_of(indices, published.name) == published
    with pytest.raises(SpaceError, match="another backbone"):
        TREE_TINY.indices_of(published)
    outside = TREE_TINY.arch_of([0] * 8).to_dict()
    outside["cells"][0]["branches"][1]["edge"] = "sep_k5"  # a net, but not of the space: not a candidate there
    with pytest.raises(SpaceError, match=r"block 0 edge 1 .* is sep_k5, not a candidate there \(avg_k3, max_k3"):
        TREE_TINY.indices_of(any_arch_from_dict(outside))
    outside["cells"] = [{"branches": [{"edge": "conv_k3"}]}] * 2  # one edge per cell
    with pytest.raises(SpaceError, match="has 2 edges; expected cells of the shape of space 'tree-tiny', 4 edges each"):
        TREE_TINY.indices_of(any_arch_from_dict(outside))


# ---------------------------------------------------------------- the supernet


def random_supernet(seed=0) -> TreeSuperNet:
    """A float64 supernet at 8 px with random α and BN affine terms, so that every path matters."""
    torch.manual_seed(seed)
    return trained_like(TreeSuperNet(TREE_TINY.with_task(8, 4)).double())


class Gated(torch.nn.Module):
    """The reference edge: g_a · o_a(x) + g_b · o_b(x) with explicit gate tensors."""

    def __init__(self, mixed: MixedOp, paths: TwoPaths, gates: torch.Tensor) -> None:
        super().__init__()
        self.mixed, self.paths, self.gates = mixed, paths, gates

    def forward(self, x):
        return sum(g * self.mixed.run_op(i, x) for g, i in zip(self.gates, (self.paths.active, self.paths.inactive)))


def test_two_path_gradient_on_tree_edges_is_binary_connect_of_the_gate_gradients():
    net = random_supernet()
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (6,), generator=torch.Generator().manual_seed(2))
    plan = net.sample_two(torch.Generator().manual_seed(3))
    # ours: α gradients from the binary gates of the shared MixedOp
    with frozen(net.weight_parameters()):
        torch.nn.functional.cross_entropy(net(x, plan), y).backward()
    ours = [a.grad.clone() for a in net.arch_parameters()]
    # reference: the same net with every searched edge an explicitly gated pair, gates (1, 0)
    reference = copy.deepcopy(net)
    gates = [torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True) for _ in plan]
    branches = [m for m in reference.modules() if isinstance(m, SuperBranch) and isinstance(m.edge, MixedOp)]
    for branch, paths, g in zip(branches, plan, gates, strict=True):
        branch.edge = Gated(branch.edge, paths, g)
    h = reference.stem(x)
    for block in reference.blocks:
        h = block(h, iter(()))  # no plan entries left to take: every searched edge is gated
    torch.nn.functional.cross_entropy(reference.classifier(reference.head(h)), y).backward()
    for alpha, paths, g, got in zip(net.arch_parameters(), plan, gates, ours):
        torch.testing.assert_close(got, expected_alpha_grad(alpha, paths.active, paths.inactive, g.grad))
    assert sum(float(g.abs().sum()) for g in ours) > 0


def test_single_path_runs_the_derived_net_and_full_mode_runs_every_path():
    net = random_supernet()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    logits = {mode: net(x, plan) for mode, plan in (("single", net.argmax()), ("full", [None] * len(net.mixed_ops())),
                                                    ("two", net.sample_two(torch.Generator().manual_seed(0))))}
    assert all(out.shape == (2, 4) and torch.isfinite(out).all() for out in logits.values())
    assert net.arch_of(net.argmax()) == net.space.arch_of(net.argmax())
    assert [len(m.specs) for m in net.mixed_ops()] == [len(e.candidates) for e in net.space.layers()]
    before = [a.detach().clone() for a in net.arch_parameters()]
    GradientStrategy(net, lr=0.1, mode="full").step(net, x, torch.tensor([0, 1]), torch.Generator())  # DARTS-style
    assert all(not torch.equal(a, b) for a, b in zip(net.arch_parameters(), before))


def test_the_derived_net_with_inherited_weights_computes_what_its_path_does():
    net = random_supernet()
    net.train()
    net(torch.randn(8, 3, 8, 8, dtype=torch.float64), net.argmax())  # running BN statistics of its own
    net.eval()
    standalone = build_net(net.arch_of(net.argmax())).double().eval()
    inherit_tree_weights(net, standalone)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(standalone(x), net(x, net.argmax()))


# ---------------------------------------------------------------- latency


def test_tree_table_keys_round_trip_and_expected_latency_is_differentiable(tmp_path):
    save_lut(synthetic_tree_table(), tmp_path / "lut.json")
    table = load_lut(tmp_path / "lut.json")
    assert table.entries == synthetic_tree_table().entries and all(isinstance(k, TreeKey) for k in table.entries)
    model = LatencyModel(TREE_TINY, table)
    assert model.fixed == pytest.approx(4.0)  # stem, two frames, head
    # fastest: sep_k3 and three identities, then at stride 2 (no identity at the root) sep_k3 and a pooling
    assert reachable(model) == pytest.approx((4.0 + 0.3 + 0.4, 4.0 + 2 * (0.8 + 0.3 + 0.1 + 0.3)))
    arch = TREE_TINY.arch_of([2, 0, 0, 2] * 2)
    assert model.of_arch(arch) == pytest.approx(model.of_indices([2, 0, 0, 2] * 2))
    supernet = TreeSuperNet(TREE_TINY)
    expected = model.expected(supernet.arch_parameters())
    expected.backward()
    assert all(alpha.grad is not None and alpha.grad.abs().sum() > 0 for alpha in supernet.arch_parameters())
    with pytest.raises(Exception, match="does not cover space 'proxyless-cifar-tree'"):
        LatencyModel(PROXYLESS_CIFAR_TREE, table)
    broken = json.loads((tmp_path / "lut.json").read_text())
    broken["entries"][0]["key"].update(kind="edge", op="sep_k4")
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(LatencyTableError, match="broken.json: entry 0 is malformed .*kernel must be odd"):
        load_lut(tmp_path / "broken.json")


def test_a_tree_table_is_calibrated_and_validated_on_random_nets_of_the_space():
    config = MeasureConfig(batch=1, threads=1, calls_per_sample=1, warmup_calls=1, min_rounds=2, max_rounds=2)
    report = validate_lut(synthetic_tree_table(), TREE_TINY, samples=3, calibrate=3, measure=config, progress=False)
    assert len(report.rows) == 3 and np.isfinite(report.calibration["scale"])  # 2 noisy rounds: any line
    assert all(TREE_TINY.indices_of(any_arch_from_dict(arch.to_dict())) is not None
               for arch in random_archs(TREE_TINY, 5))  # nets of the space, drawn per searched edge


def test_space_commands_show_a_tree_space(capsys):
    assert main(["space", "list"]) == 0
    assert "tree-tiny            32 px, tree cells: 2 x 1 blocks" in capsys.readouterr().out
    assert main(["space", "show", "tree-tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("8 searched edges") and len(lines) == 1 + 8
    assert lines[-1].split()[-4:] == ["s2", "avg_k3", "max_k3", "sep_k3"]  # no identity at a stride-2 root edge


# ---------------------------------------------------------------- searches


def test_gradient_search_on_a_measured_table_derives_a_net_that_trains(tmp_path, capsys, sample_splits):
    """`lut build` and `search` from the command line, then one epoch of training of the derived net."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TREE_TINY.to_dict()))
    assert main(["lut", "build", "--space", str(space), "--threads", "1", "--batch-size", "8", "--out",
                 str(tmp_path / "lut.json"), "--no-progress"]) == 0
    assert "19 ops of tree-tiny measured" in capsys.readouterr().out
    fastest, slowest = reachable(LatencyModel(TREE_TINY, load_lut(tmp_path / "lut.json")))
    target = (fastest + slowest) / 2
    out = tmp_path / "run"
    assert main(["search", "--space", str(space), "--lut", str(tmp_path / "lut.json"),
                 "--target-latency", f"{target:.4f}ms", "--epochs", "2", "--batch-size", "32", "--limit-images", "256",
                 "--valid-size", "0.05", "--arch-every", "1", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "latency: predicted" in printed and "latency: measured" in printed
    report = json.loads((out / "latency.json").read_text())
    assert fastest <= report["predicted_ms"] <= slowest and report["measured_ms"] > 0
    arch = load_any_arch(out / "arch.json")
    assert TREE_TINY.indices_of(arch) is not None and arch.name == "searched-run"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and "argmax_latency_ms" in rows[-1] and rows[-1]["arch_steps"] > 0
    # the latency commands take the tree-cell net: the table's prediction, and a timing
    assert main(["latency", "predict", "--arch", str(out / "arch.json"), "--lut", str(tmp_path / "lut.json")]) == 0
    assert f"searched-run: predicted {report['predicted_ms']:.2f} ms" in capsys.readouterr().out
    assert main(["latency", "measure", "--arch", str(out / "arch.json"), "--batch-size", "8", "--rounds", "2"]) == 0
    assert "(torch-cpu, batch 8, 2 rounds of 5 calls, input 32 px)" in capsys.readouterr().out
    # derive again from the checkpoint: the same net under the same rule
    assert main(["derive", str(out), "--out", str(tmp_path / "again.json")]) == 0
    assert (tmp_path / "again.json").read_text() == (out / "arch.json").read_text()
    assert main(["derive", str(out), "--out", str(tmp_path / "kept.json"), "--inherit-weights"]) == 0
    assert (out / "derived_weights.safetensors").is_file()
    # the derived net trains
    data = Splits(Subset(sample_splits.train, range(64)), None, Subset(sample_splits.test, range(32)),
                  sample_splits.classes, 32, "sample (64 images)")
    trained = train_net(arch, data, TrainConfig(epochs=1, batch_size=16, progress=False), out=tmp_path / "train")
    assert np.isfinite(trained.test_loss) and load_any_arch(tmp_path / "train" / "arch.json") == arch


def test_reinforce_search_for_a_target_resumes_exactly(tmp_path, sample_splits, monkeypatch):
    save_lut(synthetic_tree_table(), tmp_path / "lut.json")
    target = LatencyTarget(str(tmp_path / "lut.json"), 6.0, measure=False)
    data = subset(sample_splits, 128, 32)
    config = SearchConfig(epochs=2, warmup_epochs=1, batch_size=32, arch_every=1, strategy="reinforce",
                          progress=False)
    whole = search_arch(TREE_TINY, data, config, latency=target, out=tmp_path / "whole")
    assert whole.latency["target_ms"] == 6.0 and whole.latency["on_target"]
    assert whole.latency["predicted_ms"] == pytest.approx(LatencyModel(TREE_TINY, synthetic_tree_table())
                                                          .of_arch(whole.arch))
    state = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    assert isinstance(supernet_of(state, "whole"), TreeSuperNet)
    assert derive_from_run(tmp_path / "whole", out=tmp_path / "again.json").arch == whole.arch

    summary = loop.Searcher.summary

    def stop_after_epoch_1(self, rows):
        if rows["metrics"]["epoch"] == 1:
            raise KeyboardInterrupt
        return summary(self, rows)

    monkeypatch.setattr(loop.Searcher, "summary", stop_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        search_arch(TREE_TINY, data, config, latency=target, out=tmp_path / "split")
    monkeypatch.setattr(loop.Searcher, "summary", summary)
    again = search_arch(TREE_TINY, data, config, latency=target, out=tmp_path / "split", resume=True)
    resumed = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    for name, tensor in state["supernet"].items():
        torch.testing.assert_close(resumed["supernet"][name], tensor, msg=name)
    assert again.arch == replace_name(whole.arch, again.arch.name)


def replace_name(arch, name):
    return any_arch_from_dict({**arch.to_dict(), "name": name})
