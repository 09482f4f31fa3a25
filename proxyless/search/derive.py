"""Path-level pruning: keep each layer's most probable candidate.

A derive rule picks one candidate per layer (`argmax_rule` by default; a latency target has its own)
and `SuperNet.arch_of` turns those indices into the `Arch`, the only thing retraining needs;
`inherit_weights` optionally copies the supernet's weights of the kept paths into a standalone network
as a starting point.
"""

from __future__ import annotations

from torch import nn

from proxyless.layers import Residual
from proxyless.net import ProxylessNet
from proxyless.search.supernet import SuperNet


def argmax_rule(supernet: SuperNet) -> tuple[list[int], str]:
    """The default derive rule: each layer's most probable candidate (a latency target has its own)."""
    return supernet.argmax(), "argmax"


def inherit_weights(supernet: SuperNet, net: ProxylessNet) -> None:
    """Copy stem, first block, head and each kept candidate's weights from `supernet` into `net`."""
    for name in ("stem", "first_block", "feature_mix", "classifier"):
        getattr(net, name).load_state_dict(getattr(supernet, name).state_dict())
    for block, mixed, op in zip(net.blocks, supernet.mixed_ops(), net.arch.ops):
        kept = mixed.standalone(mixed.specs.index(op))  # an entangled candidate's slices, copied out
        body = block.body if isinstance(block, Residual) else block
        if not isinstance(body, nn.Identity):  # `zero` has nothing to copy
            body.load_state_dict(kept.state_dict())
