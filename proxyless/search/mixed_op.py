"""One searchable layer: every candidate op, its architecture logits α, and three explicit ways to run.

    single path   (weight step)   only the sampled op runs; the others hold no activations and get
                                  no gradient, so the optimizer leaves them untouched.
    two paths     (ProxylessNAS-G) two candidates i, j sampled from p = softmax(α), binary gates with
                                  one active: y = g_i·o_i(x) + g_j·o_j(x).  Only the active op keeps an
                                  autograd graph (for the layers below); the inactive output is computed
                                  without one and kept just for its gate gradient dL/dg = <dL/dy, o(x)>.
                                  α receives the BinaryConnect gradient in the backward pass.
    full          (DARTS-style)   y = Σ_k p_k·o_k(x) over all candidates, for comparison.

The identity shortcut is not part of the mixed op: a shape-keeping layer computes x + mixed(x)
(see `SuperBlock`), so the `zero` candidate contributes 0 and the block reduces to its shortcut.

Candidates are independent by default (the paper).  With `entangled=True` the MBConv candidates are
slices of one shared weight set (`EntangledMBConv`); `skip` and `zero` stay as they are.  All three
ways to run build on `run_op`, so they work alike for both kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from proxyless.ops import MBConv, OpSpec, Skip, Zero
from proxyless.search.entangled import EntangledMBConv
from proxyless.space import LayerSlot


@dataclass(frozen=True)
class TwoPaths:
    """The two sampled candidates of a layer for an architecture step; `active` is the gate that is 1."""

    active: int
    inactive: int


class _BinaryGates(torch.autograd.Function):
    """y = o_active (its gate is 1, the other 0); backward maps gate gradients onto α.

    dL/dg_k = <dL/dy, o_k(x)> for both sampled k, then the BinaryConnect rule over the two sampled
    logits, with p the softmax of those two:  dL/dα_i = Σ_k dL/dg_k · p_k (δ_ik − p_i).
    """

    @staticmethod
    def forward(ctx, alpha, active_out, inactive_out, indices):
        ctx.save_for_backward(alpha, active_out, inactive_out)
        ctx.indices = indices  # (active, inactive)
        return active_out.view_as(active_out)

    @staticmethod
    def backward(ctx, grad_y):
        alpha, active_out, inactive_out = ctx.saved_tensors
        index = torch.tensor(ctx.indices, device=alpha.device)
        grad_gates = torch.stack([(grad_y * active_out).sum(), (grad_y * inactive_out).sum()]).to(alpha.dtype)
        grad_alpha = torch.zeros_like(alpha)
        grad_alpha.index_add_(0, index, binary_connect(alpha[index], grad_gates))
        return grad_alpha, grad_y, None, None


def binary_connect(logits: torch.Tensor, grad_gates: torch.Tensor) -> torch.Tensor:
    """dL/dα_i = Σ_k dL/dg_k · p_k (δ_ik − p_i) with p = softmax(logits), for the sampled logits."""
    p = torch.softmax(logits, dim=0)  # (n,)
    jacobian = torch.diag(p) - p[:, None] * p[None, :]  # (n, n): ∂p_k/∂α_i = p_k (δ_ik − p_i), symmetric
    return jacobian @ grad_gates


class MixedOp(nn.Module):
    """All candidates of one searchable layer and their logits α (initialised to zero: uniform p).

    `candidates[k]` is candidate k's own module, or `nn.Identity` where it has none: `zero` and `skip`
    where the shape is kept (the block is its shortcut alone) and, when `entangled`, the MBConvs, which
    all run through the one `EntangledMBConv` in `self.shared` (None when independent).
    """

    def __init__(self, slot: LayerSlot, entangled: bool = False) -> None:
        super().__init__()
        self.slot = slot
        self.specs: tuple[OpSpec, ...] = slot.candidates
        has_mbconv = any(isinstance(op, MBConv) for op in self.specs)
        self.shared: EntangledMBConv | None = EntangledMBConv(slot) if entangled and has_mbconv else None
        self.candidates = nn.ModuleList(
            nn.Identity() if slot.is_identity(op) or self._is_shared(op) else slot.build(op) for op in self.specs
        )
        self.alpha = nn.Parameter(torch.zeros(len(self.specs)))

    def _is_shared(self, op: OpSpec) -> bool:
        return self.shared is not None and isinstance(op, MBConv)

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.alpha, dim=0)

    def is_zero(self, index: int) -> bool:
        """Whether candidate `index` adds nothing to the layer's shortcut (`zero`, or a shape-keeping `skip`)."""
        return self.slot.is_identity(self.specs[index])

    def is_skip(self, index: int) -> bool:
        """Whether candidate `index` gives up the layer's block: `zero`, or `skip` at any stride (where the
        shape changes a 1x1 projection without a nonlinearity, not an MBConv)."""
        return isinstance(self.specs[index], Zero | Skip)

    def run_op(self, index: int, x: torch.Tensor) -> torch.Tensor | None:
        """Single path: the output of candidate `index` alone; None for `zero` (nothing to add to the
        shortcut).  The two-path and full forwards are built from it."""
        if self.is_zero(index):
            return None
        op = self.specs[index]
        return self.shared(x, op) if self._is_shared(op) else self.candidates[index](x)

    def largest(self) -> int:
        """The index of the candidate with the most weights (the first of equals): with entangled weights,
        the one whose path trains every weight of the layer."""
        sizes = [sum(p.numel() for p in self.standalone(k).parameters()) for k in range(len(self.specs))]
        return max(range(len(sizes)), key=sizes.__getitem__)

    def standalone(self, index: int) -> nn.Module:
        """Candidate `index` as the module `slot.build` makes for it, holding this layer's weights: the
        candidate itself when independent, a fresh `InvertedResidual` with copies of its slices and BNs
        when entangled (`nn.Identity` for `zero`)."""
        op = self.specs[index]
        return self.shared.to_standalone(op) if self._is_shared(op) else self.candidates[index]

    def forward_two_paths(self, x: torch.Tensor, paths: TwoPaths) -> torch.Tensor:
        """Binary-gated output; the gradient w.r.t. α flows through `_BinaryGates`."""
        active = self.run_op(paths.active, x)
        with torch.no_grad():  # the inactive gate is 0: its output only enters dL/dg
            inactive = self.run_op(paths.inactive, x)
        # `zero` only exists where the layer keeps its shape, so its output is zeros like x
        active = torch.zeros_like(x) if active is None else active
        inactive = torch.zeros_like(x) if inactive is None else inactive
        return _BinaryGates.apply(self.alpha, active, inactive, (paths.active, paths.inactive))

    def forward_full(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_k p_k·o_k(x) over every candidate (memory grows with their number)."""
        p = self.probs
        total = None
        for k in range(len(self.specs)):
            out = self.run_op(k, x)
            if out is not None:
                total = p[k] * out if total is None else total + p[k] * out
        return total
