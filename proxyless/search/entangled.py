"""Weight entanglement: the MBConv candidates of one layer as slices of one shared weight set.

With independent candidates (the paper's supernet, the default) every candidate of a layer has its own
weights, so a uniformly sampled path switches each layer between independently initialised ops every
step and nothing downstream sees stable features.  Entangled candidates (as in Single-Path NAS and
Once-for-All) share one weight set, so every step trains the shared part:

    expand     1x1, (M, in, 1, 1)      M = max over the MBConv candidates of round(in * e)
    depthwise  KxK, (M, 1, K, K)       K = the largest kernel of the layer
    project    1x1, (out, M, 1, 1)

Candidate (k, e) uses the first m = round(in * e) mid channels (e3 is the first half of e6) and the
centre k x k of the depthwise kernel (the 3x3 kernel is the centre of the 5x5 and the 7x7).  Only its
slices take part in a step: activations are m channels wide, never M, and unused slices get zero gradient.

Each candidate keeps its own batch norms: the statistics of different widths and kernels differ.

e == 1 has no expansion conv: its depthwise runs on the layer's input, so m = in and it uses the first
`in` channels of the shared depthwise and project weights, by the same first-channels rule as every
other candidate.  Those channels then see the raw input for e1 and expanded, activated features for
e > 1; the candidate's own BNs re-normalise each.  Private weights for e1 would avoid the mismatch but
leave e1 as untrained by the other candidates' steps as an independent candidate, which is what
entanglement is for; with shared weights e1 reads as e > 1 with an expansion that passes its input on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from proxyless.layers import InvertedResidual, activation, batch_norm
from proxyless.ops import MBConv
from proxyless.space import LayerSlot


class CandidateNorms(nn.Module):
    """The batch norms of one entangled candidate; `expand` is None when e == 1 (no expansion conv)."""

    def __init__(self, mid_ch: int, out_ch: int, expands: bool) -> None:
        super().__init__()
        self.expand = batch_norm(mid_ch) if expands else None
        self.depthwise = batch_norm(mid_ch)
        self.project = batch_norm(out_ch)


class EntangledMBConv(nn.Module):
    """Every MBConv candidate of `slot` as a slice of one expand, one depthwise and one project weight.

    `forward(x, op)` runs candidate `op` alone; `to_standalone(op)` copies its slices and BNs into the
    `InvertedResidual` a standalone network builds for it.  Non-MBConv candidates are not held here.
    """

    def __init__(self, slot: LayerSlot) -> None:
        super().__init__()
        self.ops: tuple[MBConv, ...] = tuple(op for op in slot.candidates if isinstance(op, MBConv))
        if not self.ops:
            raise ValueError(f"{slot.describe()} has no MBConv candidate to entangle")
        self.in_ch, self.out_ch, self.stride = slot.in_channels, slot.out_channels, slot.stride
        self.keeps_shape = slot.keeps_shape
        self.act = activation(slot.activation)
        self.activation_name = slot.activation
        max_mid = max(self.mid_channels(op) for op in self.ops)
        max_kernel = max(op.kernel for op in self.ops)
        # a layer whose candidates all have e == 1 has no expansion conv at all
        has_expand = any(op.expand != 1 for op in self.ops)
        expand_weight = nn.Parameter(torch.empty(max_mid, self.in_ch, 1, 1)) if has_expand else None
        self.register_parameter("expand_weight", expand_weight)
        self.depthwise_weight = nn.Parameter(torch.empty(max_mid, 1, max_kernel, max_kernel))
        self.project_weight = nn.Parameter(torch.empty(self.out_ch, max_mid, 1, 1))
        self.norms = nn.ModuleDict(
            {str(op): CandidateNorms(self.mid_channels(op), self.out_ch, op.expand != 1) for op in self.ops}
        )
        self.reset_parameters()

    def mid_channels(self, op: MBConv) -> int:
        """The candidate's mid width, as `InvertedResidual` computes it."""
        return round(self.in_ch * op.expand)

    def reset_parameters(self, residual_init: float = 0.0) -> None:
        """As `proxyless.net.init_weights` does for independent candidates: He fan-out for the convs
        (fan-out of the largest shape), unit BNs, and, where the layer keeps its shape, each candidate's
        project BN at `residual_init` (0: its residual branch starts as the identity)."""
        for weight in (self.expand_weight, self.depthwise_weight, self.project_weight):
            if weight is not None:
                nn.init.kaiming_normal_(weight, mode="fan_out")
        for norms in self.norms.values():
            for bn in (norms.expand, norms.depthwise, norms.project):
                if bn is not None:
                    bn.reset_running_stats()
                    nn.init.ones_(bn.weight)
                    nn.init.zeros_(bn.bias)
            if self.keeps_shape:
                nn.init.constant_(norms.project.weight, residual_init)

    def weights(self, op: MBConv) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """The slices of candidate `op`: (expand or None when e == 1, depthwise, project).

        They are views of the shared parameters, so gradients flow back into the shared tensors.
        """
        mid = self.mid_channels(op)
        offset = (self.depthwise_weight.shape[-1] - op.kernel) // 2  # centre k x k of the largest kernel
        expand = self.expand_weight[:mid] if op.expand != 1 else None  # (m, in, 1, 1)
        depthwise = self.depthwise_weight[:mid, :, offset : offset + op.kernel, offset : offset + op.kernel]
        return expand, depthwise, self.project_weight[:, :mid]  # (m, 1, k, k), (out, m, 1, 1)

    def forward(self, x: torch.Tensor, op: MBConv) -> torch.Tensor:
        """Candidate `op` alone on `x` (B, in, H, W) -> (B, out, H/s, W/s)."""
        norms = self.norms[str(op)]
        expand, depthwise, project = self.weights(op)
        if expand is not None:
            x = self.act(norms.expand(F.conv2d(x, expand)))  # (B, m, H, W)
        x = F.conv2d(x, depthwise, stride=self.stride, padding=op.kernel // 2, groups=depthwise.shape[0])
        x = self.act(norms.depthwise(x))  # (B, m, H/s, W/s)
        return norms.project(F.conv2d(x, project))  # (B, out, H/s, W/s)

    @torch.no_grad()
    def to_standalone(self, op: MBConv) -> InvertedResidual:
        """A fresh `InvertedResidual` for `op` holding copies of its slices and BNs (same output)."""
        body = InvertedResidual(self.in_ch, self.out_ch, op.kernel, self.stride, op.expand, self.activation_name)
        body = body.to(self.project_weight)  # the supernet's device and dtype
        norms = self.norms[str(op)]
        expand, depthwise, project = self.weights(op)
        if expand is not None:
            _copy_conv_bn(body.expand_conv, expand, norms.expand)
        _copy_conv_bn(body.depthwise, depthwise, norms.depthwise)
        _copy_conv_bn(body.project, project, norms.project)
        return body


def _copy_conv_bn(conv_bn: nn.Sequential, weight: torch.Tensor, bn: nn.BatchNorm2d) -> None:
    """Fill a (conv, BN[, act]) sequence, as `ConvBNAct` builds it, with a weight slice and a BN."""
    conv_bn[0].weight.copy_(weight)
    conv_bn[1].load_state_dict(bn.state_dict())
