"""Weight entanglement: candidates as slices of one weight set, in the supernet and when deriving."""

import pytest
import torch
from torch import nn

from helpers import tiny_space
from proxyless.layers import InvertedResidual
from proxyless.net import build_net
from proxyless.ops import CANDIDATE_OPS, MBConv
from proxyless.search.derive import inherit_weights
from proxyless.search.entangled import EntangledMBConv
from proxyless.search.mixed_op import TwoPaths
from proxyless.search.supernet import SuperNet
from proxyless.space import NAS_BENCH_MACRO

ALL_MBCONV = tuple(name for name, op in CANDIDATE_OPS.items() if isinstance(op, MBConv))  # every (k, e)
# 8 px; layers 0 and 1 keep their shape (8 -> 8 channels, candidates + zero), layer 2 goes 8 -> 16 at stride 2
TINY = tiny_space(("mb_k3_e3", "mb_k7_e6", "mb_k5_e1"), input_size=8, stem_stride=1)


def randomize_norms(module: nn.Module, seed: int = 0) -> None:
    """Trained-like BNs (affine and running statistics), so no branch is zero and eval mode means something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            n = bn.num_features
            bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=g) * 0.1)
            bn.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def trained_supernet(space=TINY, seed=0) -> SuperNet:
    torch.manual_seed(seed)
    net = SuperNet(space, entangled=True)
    randomize_norms(net, seed)
    with torch.no_grad():
        for alpha in net.arch_parameters():
            alpha.normal_()
    return net


def load_slices(body: InvertedResidual, shared: EntangledMBConv, op: MBConv) -> None:
    """Fill a standalone body by hand: first round(in*e) mid channels, centre k x k of the kernel."""
    mid, k = round(shared.in_ch * op.expand), op.kernel
    lo = (shared.depthwise_weight.shape[-1] - k) // 2
    norms = shared.norms[str(op)]
    with torch.no_grad():
        if op.expand != 1:
            body.expand_conv[0].weight.copy_(shared.expand_weight[:mid])
            body.expand_conv[1].load_state_dict(norms.expand.state_dict())
        body.depthwise[0].weight.copy_(shared.depthwise_weight[:mid, :, lo : lo + k, lo : lo + k])
        body.depthwise[1].load_state_dict(norms.depthwise.state_dict())
        body.project[0].weight.copy_(shared.project_weight[:, :mid])
        body.project[1].load_state_dict(norms.project.state_dict())


@pytest.mark.parametrize("activation", ["relu6", "relu"])
@pytest.mark.parametrize("layer", [0, 2], ids=["shape-kept", "stride-2"])
def test_every_candidate_equals_a_standalone_body_with_its_slices(layer, activation):
    slot = tiny_space(ALL_MBCONV, input_size=8, activation=activation).layers()[layer]
    shared = EntangledMBConv(slot)
    randomize_norms(shared)
    shared.eval()
    x = torch.randn(2, slot.in_channels, 8, 8)
    for op in shared.ops:
        body = InvertedResidual(slot.in_channels, slot.out_channels, op.kernel, slot.stride, op.expand, activation)
        load_slices(body, shared, op)
        torch.testing.assert_close(shared(x, op), body.eval()(x), msg=str(op))
        torch.testing.assert_close(shared.to_standalone(op).eval()(x), body(x), msg=str(op))


def test_a_k3_step_reaches_only_the_centre_and_the_first_mid_channels():
    slot = tiny_space(("mb_k3_e3", "mb_k7_e6")).layers()[0]  # 8 channels: mid 24 of 48, kernel 3 of 7
    shared = EntangledMBConv(slot)
    randomize_norms(shared)  # the project BN starts at zero on a shape-kept layer: no gradient through it
    shared(torch.randn(2, 8, 8, 8), MBConv(3, 3)).square().sum().backward()
    used = torch.zeros_like(shared.depthwise_weight, dtype=torch.bool)
    used[:24, :, 2:5, 2:5] = True
    depthwise = shared.depthwise_weight.grad
    assert (depthwise[used] != 0).all() and (depthwise[~used] == 0).all()
    assert (shared.expand_weight.grad[:24] != 0).any() and (shared.expand_weight.grad[24:] == 0).all()
    assert (shared.project_weight.grad[:, :24] != 0).any() and (shared.project_weight.grad[:, 24:] == 0).all()
    assert all(p.grad is None for p in shared.norms["mb_k7_e6"].parameters())  # the other candidate's BNs


def test_e1_uses_the_first_input_width_channels_and_no_expansion():
    shared = EntangledMBConv(TINY.layers()[0])
    randomize_norms(shared)
    shared(torch.randn(2, 8, 8, 8), MBConv(5, 1)).sum().backward()
    assert shared.norms["mb_k5_e1"].expand is None and shared.expand_weight.grad is None
    assert (shared.depthwise_weight.grad[8:] == 0).all() and (shared.depthwise_weight.grad[:8, :, 1:6, 1:6] != 0).all()


def test_init_follows_init_weights():
    net = SuperNet(TINY, entangled=True)
    x = torch.randn(2, 8, 8, 8)
    for block in net.blocks[:2]:  # shape-kept layers start as their shortcut, whichever candidate runs
        assert all(torch.equal(block(x, k), x) for k in range(len(block.mixed.specs)))
    stride2 = net.blocks[2].mixed.shared
    assert all(torch.equal(bn.weight, torch.ones_like(bn.weight)) for bn in stride2.modules()
               if isinstance(bn, nn.BatchNorm2d))
    # He fan-out of the largest shape: 256 -> 1536 mid channels in NAS-Bench-Macro's last stage
    shared = EntangledMBConv(NAS_BENCH_MACRO.layers()[-1])
    assert shared.expand_weight.shape == (1536, 256, 1, 1)
    assert shared.expand_weight.std().item() == pytest.approx((2 / 1536) ** 0.5, rel=0.05)
    assert shared.depthwise_weight.std().item() == pytest.approx((2 / (1536 * 25)) ** 0.5, rel=0.05)


def test_the_entangled_supernet_runs_every_kind_of_plan():
    net = trained_supernet()
    x = torch.randn(2, 3, 8, 8)
    for plan in ([0, 1, 2], [3, 3, 1]):  # single paths, `zero` included
        net(x, plan).sum().backward()
    assert net.mixed_ops()[0].shared.depthwise_weight.grad is not None
    net.zero_grad()
    net(x, [TwoPaths(1, 0), TwoPaths(3, 2), TwoPaths(2, 0)]).sum().backward()
    assert all(alpha.grad.abs().sum() > 0 for alpha in net.arch_parameters())
    out = net(x, [None] * 3)
    out.sum().backward()
    assert out.shape == (2, 4) and torch.isfinite(out).all()


def test_nas_bench_macro_skip_stays_independent_and_weights_are_fewer():
    independent, entangled = SuperNet(NAS_BENCH_MACRO), SuperNet(NAS_BENCH_MACRO, entangled=True)
    assert (independent.entangled, entangled.entangled) == (False, True)
    assert num_parameters(entangled) < num_parameters(independent)
    projection = entangled.mixed_ops()[0]  # layer 0 changes shape: skip is a 1x1 projection of its own
    assert isinstance(projection.candidates[0], nn.Sequential) and projection.shared is not None
    assert all(m.shared is None for m in independent.mixed_ops())


PLANS = {
    "tiny": (TINY, [1, 3, 2]),  # k7_e6, zero, k5_e1
    "tiny-e1": (TINY, [2, 0, 0]),  # k5_e1, k3_e3, k3_e3
    "nas-bench-macro": (NAS_BENCH_MACRO, [0, 1, 2, 0, 2, 1, 0, 2]),  # skip as a projection and as the identity
}


@pytest.mark.parametrize("space, plan", PLANS.values(), ids=PLANS.keys())
def test_inherit_weights_gives_the_supernet_output(space, plan):
    net = trained_supernet(space)
    standalone = build_net(net.arch_of(plan))
    inherit_weights(net, standalone)
    net.eval(), standalone.eval()
    x = torch.randn(2, 3, space.input_size, space.input_size)
    torch.testing.assert_close(standalone(x), net(x, plan))


def test_state_dict_round_trip():
    net = trained_supernet()
    copy = SuperNet(TINY, entangled=True)
    copy.load_state_dict(net.state_dict())
    net.eval(), copy.eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(copy(x, [1, 0, 2]), net(x, [1, 0, 2]))
    assert any(".shared.depthwise_weight" in key for key in net.state_dict())


@pytest.mark.parametrize("entangled", [False, True])
def test_residual_branches_start_as_identity_unless_asked_to_start_at_full_scale(entangled):
    """Shape-keeping candidates' project BNs start at zero by default, at one with residual_init=1 and at 0.2
    with 0.2; a stride or width change (no shortcut) always starts at one."""
    def project_gammas(net: SuperNet) -> list[tuple[bool, float]]:
        rows = []
        for block, mixed in zip(net.blocks, net.mixed_ops()):
            norms = ([n.project for n in mixed.shared.norms.values()] if entangled else
                     [op.project[1] for op in mixed.candidates if isinstance(op, InvertedResidual)])
            rows += [(block.shortcut, float(n.weight.detach().abs().max())) for n in norms]
        return rows

    zeroed = project_gammas(SuperNet(TINY, entangled=entangled))
    full = project_gammas(SuperNet(TINY, entangled=entangled, residual_init=1.0))
    small = project_gammas(SuperNet(TINY, entangled=entangled, residual_init=0.2))
    assert {shortcut for shortcut, _ in zeroed} == {True, False}  # both kinds of layer are checked
    assert all(gamma == (0.0 if shortcut else 1.0) for shortcut, gamma in zeroed)
    assert all(gamma == 1.0 for _, gamma in full)
    assert all(gamma == pytest.approx(0.2 if shortcut else 1.0) for shortcut, gamma in small)
