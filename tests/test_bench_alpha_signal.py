"""benchmarks/alpha_signal.py: the gradient it samples is the arch step's, and its z tells drift from noise."""

import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from helpers import tiny32_space, trained_like
from proxyless.search.supernet import SuperNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from alpha_signal import gradient_samples, summarise  # noqa: E402


def test_a_steady_drift_stands_out_and_pure_noise_does_not():
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(400, 3, generator=generator)  # (steps, candidates)
    drift = noise * 0.1 + torch.tensor([1.0, -1.0, 0.5])
    probs = [torch.full((3,), 1 / 3)]
    assert summarise([drift], probs, arch_steps=100)["share_z_over_2"] == 1.0
    quiet = summarise([noise], probs, arch_steps=100)
    # zero mean: z is about √T/√steps · |N(0, 1)|, under 2 for every logit
    assert quiet["share_z_over_2"] == 0.0 and quiet["z_max"] < 2
    # the steps that would make the noise's tiny means reach z = 2 are many more than the drift needs
    assert quiet["steps_for_z2_median"] > 100 * summarise([drift], probs, arch_steps=100)["steps_for_z2_median"]


def test_gradients_are_the_arch_steps_and_leave_the_supernet_as_it_was():
    torch.manual_seed(0)
    supernet = trained_like(SuperNet(tiny32_space(), entangled=True))
    before = {name: value.clone() for name, value in supernet.state_dict().items()}
    valid = TensorDataset(torch.randn(40, 3, 32, 32), torch.randint(0, 10, (40,)))
    grads = gradient_samples(supernet, valid, batch=8, steps=5, seed=0)
    candidates = [len(m.specs) for m in supernet.mixed_ops()]
    assert [tuple(g.shape) for g in grads] == [(5, n) for n in candidates]
    # two paths a step: at most two logits of a layer move, and their gradients sum to zero (BinaryConnect
    # over the two sampled logits keeps their total)
    for g in grads:
        assert ((g != 0).sum(1) <= 2).all() and torch.allclose(g.sum(1), torch.zeros(5), atol=1e-6)
    assert any(g.abs().sum() > 0 for g in grads)
    after = supernet.state_dict()
    # α and weights untouched; BN running statistics move (train mode, as in the search's arch step)
    assert all(torch.equal(before[name], after[name]) for name in before if "running" not in name
               and "num_batches" not in name)
