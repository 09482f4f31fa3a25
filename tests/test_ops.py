import pytest
import torch

from proxyless.ops import CANDIDATE_OPS, EXPAND_RATIOS, KERNEL_SIZES, MBConv, Skip, Zero, format_op, parse_op


@pytest.mark.parametrize("name", list(CANDIDATE_OPS))
def test_op_string_round_trip(name):
    assert format_op(parse_op(name)) == name


def test_registry_covers_the_grammar():
    assert len(CANDIDATE_OPS) == len(KERNEL_SIZES) * len(EXPAND_RATIOS) + 2  # + zero, skip
    assert parse_op("mb_k7_e3") == MBConv(7, 3)
    assert parse_op("zero") == Zero()
    assert parse_op("skip") == Skip()


@pytest.mark.parametrize("bad", ["mb_k4_e3", "mb_k3_e2", "mb_k3", "conv3x3", "", "MB_K3_E3", "zero2"])
def test_unknown_op_names_the_known_ones(bad):
    with pytest.raises(ValueError, match="unknown op .*known ops: mb_k3_e1"):
        parse_op(bad)


def test_records_are_frozen_and_hashable():
    op = MBConv(3, 6)
    with pytest.raises(AttributeError):
        op.kernel = 5
    assert len({MBConv(3, 6), MBConv(3, 6), Zero()}) == 2


@pytest.mark.parametrize("kernel,expand", [(k, e) for k in KERNEL_SIZES for e in EXPAND_RATIOS])
def test_mbconv_structure(kernel, expand):
    body = MBConv(kernel, expand).build(8, 16, 2)
    convs = [m for m in body.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == (2 if expand == 1 else 3)
    depthwise = convs[-2]
    assert depthwise.kernel_size == (kernel, kernel) and depthwise.stride == (2, 2)
    assert depthwise.groups == depthwise.in_channels == round(8 * expand)
    assert all(c.bias is None for c in convs)
    assert body(torch.randn(2, 8, 9, 9)).shape == (2, 16, 5, 5)


def test_zero_only_where_shape_is_kept():
    x = torch.randn(1, 8, 4, 4)
    assert torch.equal(Zero().build(8, 8, 1)(x), x)
    with pytest.raises(ValueError, match="stride 1"):
        Zero().build(8, 16, 1)


def test_skip_is_the_input_where_the_shape_is_kept_and_a_projection_where_it_changes():
    x = torch.randn(2, 8, 9, 9)
    assert torch.equal(Skip().build(8, 8, 1)(x), x)
    projection = Skip().build(8, 16, 2, act="relu")
    convs = [m for m in projection.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.bias) for c in convs] == [((1, 1), (2, 2), None)]
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6)) for m in projection.modules())  # linear, + BN
    assert projection(x).shape == (2, 16, 5, 5)


@pytest.mark.parametrize("act,kind", [("relu6", torch.nn.ReLU6), ("relu", torch.nn.ReLU)])
def test_mbconv_uses_the_named_activation(act, kind):
    body = MBConv(3, 6).build(8, 8, 1, act=act)
    assert [type(m) for m in body.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6))] == [kind, kind]
