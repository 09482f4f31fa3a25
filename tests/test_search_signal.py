"""The α signal of a search (`search.signal`): z tells a drift from noise, the arch step records the
cross-entropy's own gradient and still follows the whole loss's, and a search reports it."""

import copy

import pytest
import torch

from helpers import tiny_space, trained_like
from proxyless.latency.loss import LatencyLoss
from proxyless.search.signal import GradientSignal
from proxyless.search.strategies import GradientStrategy, frozen
from proxyless.search.supernet import SuperNet


def test_a_steady_drift_reads_high_and_noise_low():
    generator = torch.Generator().manual_seed(0)
    drift, noise = GradientSignal(), GradientSignal()
    for _ in range(200):
        step = torch.randn(3, generator=generator)
        drift.add([step * 0.2 + torch.tensor([1.0, -1.0, 0.5])])
        noise.add([step])
    assert drift.median_z() > 50 and noise.median_z() < 2
    resumed = GradientSignal()
    resumed.load_state_dict(copy.deepcopy(noise.state_dict()))
    assert resumed.median_z() == noise.median_z() and resumed.steps == 200
    assert GradientSignal().median_z() is None


@pytest.mark.parametrize("kind", ["add", "mul", "log"])
def test_the_arch_step_follows_the_whole_loss_and_records_the_cross_entropys_part(kind):
    torch.manual_seed(0)
    net = trained_like(SuperNet(tiny_space(("mb_k3_e3", "mb_k5_e6", "mb_k3_e6"), input_size=8, stem_stride=1)))
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 4, (6,))
    costs = [torch.arange(1.0, len(m.specs) + 1) for m in net.mixed_ops()]  # a made-up latency per candidate
    loss = LatencyLoss(kind, target=2.0, weight=0.3)

    def arch_loss(supernet, ce):
        expected = sum((p * c).sum() for p, c in zip((a.softmax(0) for a in supernet.arch_parameters()), costs))
        return loss.combine(ce, expected)

    # the reference: one backward of the whole loss, on the same paths
    plan = net.sample_two(torch.Generator().manual_seed(1))
    with frozen(net.weight_parameters()):
        ce = torch.nn.functional.cross_entropy(net(x, plan), y)
        arch_loss(net, ce).backward()
    whole = [a.grad.clone() for a in net.arch_parameters()]
    for a in net.arch_parameters():
        a.grad = None
    with frozen(net.weight_parameters()):
        torch.nn.functional.cross_entropy(net(x, plan), y).backward()
    ce_only = [a.grad.clone() for a in net.arch_parameters()]
    assert any(not torch.allclose(w, c) for w, c in zip(whole, ce_only))  # the latency term matters here

    strategy = GradientStrategy(net, lr=0.1, arch_loss=arch_loss)
    strategy.step(net, x, y, torch.Generator().manual_seed(1))
    for got, want in zip(net.arch_parameters(), whole):
        torch.testing.assert_close(got.grad, want)
    for got, want in zip(strategy.signal.sums, ce_only):
        torch.testing.assert_close(got.float(), want)
