"""The supernet, the two strategies, derive and resume, on tiny shapes."""

import copy

import pytest
import torch

from helpers import expected_alpha_grad, tiny_space, trained_like
from proxyless.errors import NonFiniteLossError
from proxyless.net import build_net
from proxyless.ops import Zero, parse_op
from proxyless.search.derive import argmax_rule, inherit_weights
from proxyless.search.loop import SearchConfig, Searcher
from proxyless.search.mixed_op import TwoPaths, binary_connect
from proxyless.search.strategies import GradientStrategy, ReinforceStrategy, frozen
from proxyless.search.supernet import SuperNet

# 8 px input; layers 0 and 1 keep their shape (3 candidates: two MBConv + zero), layer 2 does not.
TINY = tiny_space(("mb_k3_e3", "mb_k5_e3"), input_size=8, stem_stride=1)


def tiny_supernet(seed=0, dtype=torch.float32):
    """A supernet with random α and trained-like weights (no zero-initialised branch left)."""
    torch.manual_seed(seed)
    return trained_like(SuperNet(TINY).to(dtype))


def test_shape_keeping_candidates_start_as_identity():
    net = SuperNet(TINY)
    x = torch.randn(2, 8, 8, 8)
    for block in net.blocks[:2]:  # the shape-keeping layers
        for k in range(len(block.mixed.specs)):
            assert torch.equal(block(x, k), x)


def batch(seed=0, n=6, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 4, (n,), generator=g)


def gated_loss(net, x, y, plan, gates):
    """Reference forward with explicit gate tensors: y_l = [x +] Σ_k g_k · o_k(x) over the two sampled paths."""
    h = net.first_block(net.stem(x))
    for block, paths, g in zip(net.blocks, plan, gates):
        outs = [block.mixed.run_op(i, h) for i in (paths.active, paths.inactive)]
        mixed = sum(gk * (torch.zeros_like(h) if o is None else o) for gk, o in zip(g, outs))
        h = h + mixed if block.shortcut else mixed
    logits = net.classifier(net.pool(net.feature_mix(h)).flatten(1))
    return torch.nn.functional.cross_entropy(logits, y)


PLAN = [TwoPaths(2, 0), TwoPaths(1, 2), TwoPaths(0, 1)]  # layer 0: `zero` active; layer 1: `zero` inactive


def test_two_path_alpha_gradient_matches_reference_and_finite_differences():
    net = tiny_supernet(dtype=torch.float64)
    x, y = batch(dtype=torch.float64)
    # ours: α gradients from the binary-gate autograd function
    with frozen(net.weight_parameters()):
        torch.nn.functional.cross_entropy(net(x, PLAN), y).backward()
    ours = [a.grad.clone() for a in net.arch_parameters()]
    # reference: gate gradients by autograd on explicit gates, checked by central differences
    gates = [torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True) for _ in PLAN]
    gated_loss(net, x, y, PLAN, gates).backward()
    eps = 1e-6
    for layer, g in enumerate(gates):
        for k in range(2):
            shifted = [gg.detach().clone() for gg in gates]
            shifted[layer][k] += eps
            up = gated_loss(net, x, y, PLAN, shifted)
            shifted[layer][k] -= 2 * eps
            down = gated_loss(net, x, y, PLAN, shifted)
            assert g.grad[k].item() == pytest.approx(((up - down) / (2 * eps)).item(), rel=1e-5, abs=1e-9)
    # BinaryConnect over the two sampled logits: dL/dα_i = Σ_k dL/dg_k p_k (δ_ik − p_i)
    for alpha, paths, g, got in zip(net.arch_parameters(), PLAN, gates, ours):
        torch.testing.assert_close(got, expected_alpha_grad(alpha, paths.active, paths.inactive, g.grad))
        idx = [paths.active, paths.inactive]
        assert got[[j for j in range(len(alpha)) if j not in idx]].abs().sum() == 0


def test_binary_connect_is_the_softmax_jacobian():
    logits, grad_g = torch.randn(2, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda a: torch.softmax(a, 0), logits)
    torch.testing.assert_close(binary_connect(logits, grad_g), jac.T @ grad_g)


def test_zero_layer_alpha_still_learns_when_zero_is_active():
    net = tiny_supernet()
    assert isinstance(net.mixed_ops()[0].specs[2], Zero)
    x, y = batch()
    with frozen(net.weight_parameters()):
        torch.nn.functional.cross_entropy(net(x, PLAN), y).backward()
    grad = net.arch_parameters()[0].grad
    assert grad[2] != 0 and grad[0] != 0  # both sampled logits of the skipped layer move


def test_arch_step_builds_no_weight_gradients_and_keeps_no_inactive_graph():
    net = tiny_supernet()
    x, y = batch()
    GradientStrategy(net, lr=0.1).step(net, x, y, torch.Generator().manual_seed(0))
    assert all(p.grad is None for p in net.weight_parameters())
    assert all(p.requires_grad for p in net.weight_parameters())  # unfrozen afterwards


def test_rescale_keeps_unsampled_probabilities():
    net = tiny_supernet()
    x, y = batch()
    generator = torch.Generator().manual_seed(3)
    plan = net.sample_two(copy.deepcopy(generator))
    before = [p.clone() for p in net.probs()]
    GradientStrategy(net, lr=0.5).step(net, x, y, generator)
    for p_old, p_new, paths in zip(before, net.probs(), plan):
        sampled = [paths.active, paths.inactive]
        others = [k for k in range(len(p_old)) if k not in sampled]
        torch.testing.assert_close(p_new[others], p_old[others])
        assert not torch.allclose(p_new[sampled], p_old[sampled])


def test_weight_step_touches_only_sampled_ops(tmp_path):
    net = tiny_supernet()
    x, y = batch(n=8)
    data = torch.utils.data.TensorDataset(torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,)))
    config = SearchConfig(epochs=2, batch_size=8, weight_decay=0.1, progress=False, channels_last=False)
    searcher = Searcher(net, GradientStrategy(net), data, data, config, torch.device("cpu"))
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    plan = net.sample_single(torch.Generator().manual_seed(7))
    searcher.weight_step(x, y, plan)
    for layer, (mixed, chosen) in enumerate(zip(net.mixed_ops(), plan)):
        for k, op in enumerate(mixed.candidates):
            changed = [not torch.equal(before[n], p) for n, p in _named(net, op)]
            has_state = [p in searcher.optimizer.state for p in op.parameters()]
            if k == chosen:
                assert any(changed), (layer, k)
            else:
                assert not any(changed) and not any(has_state), (layer, k)
    assert all(torch.equal(before[n], p) for n, p in net.named_parameters() if "alpha" in n)


def _named(net, module):
    ids = {id(p) for p in module.parameters()}
    return [(n, p) for n, p in net.named_parameters() if id(p) in ids]


def test_reinforce_raises_probability_of_rewarded_path():
    net = tiny_supernet()
    x, y = batch()
    target_op = parse_op("mb_k5_e3")
    strategy = ReinforceStrategy(net, reward=lambda arch, acc: float(arch.ops[1] == target_op), lr=0.05)
    index = net.mixed_ops()[1].specs.index(target_op)
    start = net.probs()[1][index].item()
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        strategy.step(net, x, y, generator)
    assert net.probs()[1][index].item() > start + 0.2


def test_derive_picks_the_argmax_and_inherits_its_weights():
    net = tiny_supernet()
    arch = net.arch_of(argmax_rule(net)[0])
    assert [m.specs.index(op) for m, op in zip(net.mixed_ops(), arch.ops)] == [int(p.argmax()) for p in net.probs()]
    standalone = build_net(arch)
    inherit_weights(net, standalone)
    x, _ = batch()
    net.eval(), standalone.eval()
    torch.testing.assert_close(standalone(x), net(x, net.argmax()))


def teacher_task(seed=0):
    """Labels produced by the supernet itself along a known path: that path is the best one."""
    net = tiny_supernet(seed)
    with torch.no_grad():
        net.classifier.weight.mul_(50)  # confident teacher: the true path has near-zero loss
        for alpha in net.arch_parameters():
            alpha.zero_()
    best = [1, 2, 0]  # mb_k5_e3, zero, mb_k3_e3
    x = torch.randn(256, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    net.train()
    with torch.no_grad():
        y = net(x, best).argmax(1)
    return net, x, y, best


@pytest.mark.parametrize("strategy_name", ["gradient", "reinforce"])
def test_both_strategies_find_the_known_best_path(strategy_name):
    net, x, y, best = teacher_task()
    if strategy_name == "gradient":
        strategy = GradientStrategy(net, lr=0.05)
    else:
        strategy = ReinforceStrategy(net, lr=0.05, baseline_decay=0.9)
    generator = torch.Generator().manual_seed(1)
    for _step in range(400):
        rows = torch.randint(0, len(x), (64,), generator=generator)
        strategy.step(net, x[rows], y[rows], generator)
    assert net.argmax() == best, [p.tolist() for p in net.probs()]


def test_non_finite_losses_stop_the_search_before_anything_is_updated(tmp_path):
    """NaN in a weight step, an architecture step or a REINFORCE reward: NonFiniteLossError before the
    step touches weights or α, and the last checkpoint on disk stays loadable and finite."""
    net = tiny_supernet()
    data = torch.utils.data.TensorDataset(torch.randn(32, 3, 8, 8), torch.randint(0, 4, (32,)))
    config = SearchConfig(epochs=2, warmup_epochs=0, batch_size=8, arch_every=1, checkpoint_every=2,
                          progress=False, channels_last=False)
    searcher = Searcher(net, GradientStrategy(net), data, data, config, torch.device("cpu"))
    criterion, calls = searcher.criterion, []

    def nan_on_the_sixth_weight_step(logits, targets):
        calls.append(1)
        return criterion(logits, targets) * (float("nan") if len(calls) == 6 else 1.0)

    searcher.criterion = nan_on_the_sixth_weight_step
    with pytest.raises(NonFiniteLossError, match="search loss became nan in a weight step; lower --lr"):
        searcher.run(tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 0)  # the last save before the sixth step (of 4 per epoch)
    assert all(torch.isfinite(t).all() for t in state["supernet"].values())
    assert all(torch.isfinite(p).all() for p in net.parameters())

    x, y = batch(n=8)
    before = [p.detach().clone() for p in net.parameters()]
    gradient = GradientStrategy(net, arch_loss=lambda supernet, ce: ce * float("inf"))
    with pytest.raises(NonFiniteLossError, match="architecture loss became"):
        gradient.step(net, x, y, torch.Generator().manual_seed(0))
    reinforce = ReinforceStrategy(net, reward=lambda arch, accuracy: float("nan"))
    with pytest.raises(NonFiniteLossError, match="the reward function returned nan"):
        reinforce.step(net, x, y, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
