"""Import and export the original ProxylessNAS network configuration format.

The published configurations (``proxyless_{mobile,cpu,gpu,mobile_14}.config.json``) look like:

    {"first_conv": {"name": "ConvLayer", "kernel_size": 3, "stride": 2, "out_channels": 32, ...},
     "blocks": [{"name": "MobileInvertedResidualBlock",
                 "mobile_inverted_conv": {"name": "MBInvertedConvLayer", "in_channels": 32,
                                          "out_channels": 16, "kernel_size": 3, "stride": 1,
                                          "expand_ratio": 1},
                 "shortcut": null}, ...],
     "feature_mix_layer": {"name": "ConvLayer", "kernel_size": 1, ...},
     "classifier": {"name": "LinearLayer", "in_features": 1280, "out_features": 1000, ...}}

`arch_from_legacy` turns such a dict into an `Arch` (block 0 is the fixed first block; a new stage
starts wherever the width or the stride changes).  `legacy_from_net` walks a *built* network and
writes the same format back, so a test can compare our builder with the reference field by field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from proxyless.arch import Arch, ArchError
from proxyless.errors import UserError
from proxyless.layers import BN_EPS, BN_MOMENTUM, ConvBNAct, InvertedResidual, Residual
from proxyless.net import ProxylessNet
from proxyless.ops import MBConv, OpSpec, Skip, Zero
from proxyless.space import PROXYLESS_IMAGENET, SearchSpace, Stage

_CONV_DEFAULTS = {"dilation": 1, "groups": 1, "bias": False, "has_shuffle": False,
                  "use_bn": True, "act_func": "relu6", "dropout_rate": 0, "ops_order": "weight_bn_act"}


@dataclass(frozen=True)
class _Block:
    op: OpSpec
    out_channels: int | None  # None for a zero block (keeps its input width)
    stride: int


def is_legacy_config(data: Any) -> bool:
    return isinstance(data, dict) and "blocks" in data and "first_conv" in data


def arch_from_legacy(config: dict[str, Any], name: str = "", input_size: int = 224) -> Arch:
    """Original-format config dict -> `Arch` on a space whose widths are the config's own."""
    try:
        blocks = [_parse_block(b) for b in config["blocks"]]
        first, rest = blocks[0], blocks[1:]
        if first.op != MBConv(3, 1) or first.stride != 1:
            raise ArchError("block 0 must be the fixed first block (3x3, expand 1, stride 1)")
        stages, ops = _group_stages(rest, first.out_channels)
        space = SearchSpace(
            name=name or "imported",
            input_size=input_size,
            stem_channels=config["first_conv"]["out_channels"],
            stem_stride=config["first_conv"]["stride"],
            first_block_channels=first.out_channels,
            stages=tuple(stages),
            candidates=_candidates_for(ops),
            feature_mix_channels=config["feature_mix_layer"]["out_channels"],
            num_classes=config["classifier"]["out_features"],
            dropout=float(config["classifier"].get("dropout_rate", 0.0)),
        )
    except UserError:
        raise
    except (KeyError, TypeError, IndexError, ValueError) as err:  # ValueError: e.g. float("x")
        raise ArchError(f"not a ProxylessNAS network config: missing or malformed field {err}") from None
    return Arch(space, tuple(ops), name)


def _parse_block(block: dict[str, Any]) -> _Block:
    conv = block["mobile_inverted_conv"]
    if conv["name"] == "ZeroLayer":
        return _Block(Zero(), None, conv["stride"])
    if conv["name"] != "MBInvertedConvLayer":
        raise ArchError(f"unsupported layer type {conv['name']!r}; expected MBInvertedConvLayer or ZeroLayer")
    try:
        op = MBConv(conv["kernel_size"], conv["expand_ratio"])
    except ValueError as err:
        raise ArchError(f"unsupported block: {err}") from None
    return _Block(op, conv["out_channels"], conv["stride"])


def _group_stages(blocks: list[_Block], in_ch: int) -> tuple[list[Stage], list[OpSpec]]:
    """Consecutive blocks with one width form a stage; its first block sets the stride."""
    stages: list[Stage] = []
    width = in_ch
    for block in blocks:
        new_stage = block.out_channels not in (None, width) or block.stride != 1 or not stages
        if new_stage:
            if isinstance(block.op, Zero):
                raise ArchError("a stage cannot start with a ZeroLayer")
            stages.append(Stage(block.out_channels, 1, block.stride))
            width = block.out_channels
        else:
            last = stages[-1]
            stages[-1] = Stage(last.width, last.depth + 1, last.stride)
    return stages, [block.op for block in blocks]


def _candidates_for(ops: list[OpSpec]) -> tuple[OpSpec, ...]:
    """The paper's candidates, plus any other MBConv the config uses."""
    extra = [op for op in dict.fromkeys(ops) if isinstance(op, MBConv) and op not in PROXYLESS_IMAGENET.candidates]
    return PROXYLESS_IMAGENET.candidates + tuple(extra)


# -- export: walk a built network ---------------------------------------------------------------


def legacy_from_net(net: ProxylessNet) -> dict[str, Any]:
    """Describe a built network in the original configuration format, read off its modules."""
    space = net.arch.space
    if space.activation != "relu6" or not space.has_first_block or Skip() in space.candidates:
        raise ArchError(f"space {space.name!r} has no equivalent in the original configuration format, which "
                        "knows ReLU6 MBConv nets with a first block and zero layers only")
    return {
        "name": "ProxylessNASNets",
        "bn": {"momentum": BN_MOMENTUM, "eps": BN_EPS},
        "first_conv": _conv_config(net.stem),
        "feature_mix_layer": _conv_config(net.feature_mix),
        "classifier": {
            "name": "LinearLayer", "in_features": net.classifier.in_features,
            "out_features": net.classifier.out_features, "bias": net.classifier.bias is not None,
            "use_bn": False, "act_func": None, "dropout_rate": net.dropout.p, "ops_order": "weight_bn_act",
        },
        "blocks": [_block_config(net.first_block, net.stem[0].out_channels)]
        + _blocks_config(net.blocks, net.first_block),
    }


def _blocks_config(blocks: nn.Sequential, first_block: nn.Module) -> list[dict[str, Any]]:
    configs, in_ch = [], _body(first_block).out_ch
    for block in blocks:
        configs.append(_block_config(block, in_ch))
        if not isinstance(block, nn.Identity):
            in_ch = _body(block).out_ch
    return configs


def _body(block: nn.Module) -> InvertedResidual:
    return block.body if isinstance(block, Residual) else block


def _block_config(block: nn.Module, in_ch: int) -> dict[str, Any]:
    if isinstance(block, nn.Identity):  # a zero block: only the shortcut is left
        conv, shortcut = {"name": "ZeroLayer", "stride": 1}, _identity_config(in_ch)
    else:
        body = _body(block)
        conv = {
            "name": "MBInvertedConvLayer", "in_channels": body.in_ch, "out_channels": body.out_ch,
            "kernel_size": body.depthwise[0].kernel_size[0], "stride": body.depthwise[0].stride[0],
            "expand_ratio": body.depthwise[0].in_channels // body.in_ch,
        }
        shortcut = _identity_config(body.in_ch) if isinstance(block, Residual) else None
    return {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": conv, "shortcut": shortcut}


def _identity_config(channels: int) -> dict[str, Any]:
    return {"name": "IdentityLayer", "in_channels": channels, "out_channels": channels, "use_bn": False,
            "act_func": None, "dropout_rate": 0, "ops_order": "weight_bn_act"}


def _conv_config(layer: ConvBNAct) -> dict[str, Any]:
    conv = layer[0]
    return {"name": "ConvLayer", "kernel_size": conv.kernel_size[0], "stride": conv.stride[0],
            **_CONV_DEFAULTS, "in_channels": conv.in_channels, "out_channels": conv.out_channels}
