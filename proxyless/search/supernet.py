"""The over-parameterized network: fixed stem and head around one `MixedOp` per searchable layer.

Which path each layer runs is passed with every call as a *plan*, one entry per layer:

    int        single path: that candidate only (weight steps, evaluating a sampled arch)
    TwoPaths   two binary-gated candidates (architecture step, ProxylessNAS-G)
    None       every candidate weighted by p (full, DARTS-style)

There is no mode stored anywhere: the same supernet serves every kind of step.
Module names match `ProxylessNet`, so a derived network can inherit the supernet's weights.

`SuperNet(space, entangled=True)` shares one weight set among the MBConv candidates of each layer
(see `proxyless.search.entangled`); the default keeps the paper's independent candidates.
`residual_init` is the scale the residual branches of shape-keeping candidates start at (their project
BN's γ): 0, the default, starts them as the identity, 1 at full scale as a standalone net.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from proxyless.arch import Arch
from proxyless.layers import InvertedResidual
from proxyless.net import init_weights, make_feature_mix, make_first_block, make_stem
from proxyless.search.mixed_op import MixedOp, TwoPaths
from proxyless.space import SearchSpace

Choice = int | TwoPaths | None
Plan = Sequence[Choice]


def run_choice(mixed: MixedOp, x: torch.Tensor, choice: Choice) -> torch.Tensor | None:
    """`mixed` run as one plan entry says: one candidate, two binary-gated ones, or all (None: `zero`)."""
    if isinstance(choice, TwoPaths):
        return mixed.forward_two_paths(x, choice)
    if choice is None:
        return mixed.forward_full(x)
    return mixed.run_op(choice, x)


class SuperBlock(nn.Module):
    """A mixed op, plus the identity shortcut where the layer keeps its shape."""

    def __init__(self, mixed: MixedOp) -> None:
        super().__init__()
        self.mixed = mixed
        self.shortcut = mixed.slot.keeps_shape

    def forward(self, x: torch.Tensor, choice: Choice) -> torch.Tensor:
        out = run_choice(self.mixed, x, choice)
        if out is None:  # single path through `zero`: the block is its shortcut
            return x
        return x + out if self.shortcut else out


class SupernetBase(nn.Module):
    """What the search calls on a supernet of any kind of space (this one, or `proxyless.tree.supernet`):
    its mixed ops found by type, in plan order, their α, and sampling and deriving plans from α. A subclass
    builds the network, runs `forward(x, plan)` and turns indices into its kind of architecture (`arch_of`)."""

    # -- parameters, selected by type -------------------------------------------------------------

    def mixed_ops(self) -> list[MixedOp]:
        return [m for m in self.modules() if isinstance(m, MixedOp)]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [m.alpha for m in self.mixed_ops()]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    # -- sampling and deriving --------------------------------------------------------------------

    def probs(self) -> list[torch.Tensor]:
        return [m.probs.detach() for m in self.mixed_ops()]

    def sample_single(self, generator: torch.Generator, uniform: bool = False,
                      among: list[list[int]] | None = None) -> list[int]:
        """One candidate per layer, drawn from p (or uniformly, e.g. during warmup); `among` (per layer, the
        candidate indices to draw from, p renormalised over them) leaves the others out."""
        plan = []
        for layer, p in enumerate(self.probs()):
            weights = torch.ones_like(p) if uniform else p
            kept = list(range(len(p))) if among is None else among[layer]
            plan.append(kept[int(torch.multinomial(weights.cpu()[kept], 1, generator=generator))])
        return plan

    def sample_two(self, generator: torch.Generator) -> list[TwoPaths]:
        """Two distinct candidates per layer from p; the active one drawn from their renormalised p."""
        plan = []
        for p in self.probs():
            p = p.cpu()
            pair = torch.multinomial(p, 2, replacement=False, generator=generator)
            first_active = int(torch.multinomial(p[pair], 1, generator=generator)) == 0
            a, b = int(pair[0]), int(pair[1])
            plan.append(TwoPaths(a, b) if first_active else TwoPaths(b, a))
        return plan

    def argmax(self) -> list[int]:
        return [int(p.argmax()) for p in self.probs()]


class SuperNet(SupernetBase):
    """Every candidate of every layer of `space`; `entangled` makes each layer's MBConvs share weights;
    `residual_init` is where every residual branch's scale starts (see `proxyless.net.init_weights`)."""

    def __init__(self, space: SearchSpace, entangled: bool = False, residual_init: float = 0.0) -> None:
        super().__init__()
        self.space = space
        self.entangled = entangled
        self.stem = make_stem(space)
        self.first_block = make_first_block(space)
        self.blocks = nn.ModuleList(SuperBlock(MixedOp(slot, entangled)) for slot in space.layers())
        self.feature_mix = make_feature_mix(space)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(space.dropout)
        self.classifier = nn.Linear(space.feature_mix_out, space.num_classes)
        shortcut_bodies = tuple(
            op for block in self.blocks if block.shortcut for op in block.mixed.candidates
            if isinstance(op, InvertedResidual)
        )
        init_weights(self, residual=shortcut_bodies, residual_scale=residual_init)
        for mixed in self.mixed_ops():
            if mixed.shared is not None:  # init_weights reset its BNs (the residual scales included)
                mixed.shared.reset_parameters(residual_init=residual_init)

    def forward(self, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        assert len(plan) == len(self.blocks), (len(plan), len(self.blocks))
        x = self.first_block(self.stem(x))  # (B, first, H', W')
        for block, choice in zip(self.blocks, plan):
            x = block(x, choice)
        x = self.pool(self.feature_mix(x)).flatten(1)  # (B, feature_mix)
        return self.classifier(self.dropout(x))

    def arch_of(self, indices: Sequence[int], name: str = "") -> Arch:
        """The architecture that a single-path plan selects."""
        ops = tuple(m.specs[i] for m, i in zip(self.mixed_ops(), indices))
        return Arch(self.space, ops, name)
