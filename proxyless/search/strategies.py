"""Architecture-update strategies behind one small interface, so the search loop never branches on type.

    strategy.step(supernet, images, targets, generator) -> dict of floats to log
    strategy.state_dict() / load_state_dict(state)       -> for checkpoints

`GradientStrategy` (ProxylessNAS-G): binarized two-path sampling (or full DARTS-style mixing), α
gradients through the binary gates, Adam on α, then rescaling of the two sampled logits.
`ReinforceStrategy` (ProxylessNAS-R): sample a whole architecture, reward it with any callable (it may
measure latency: nothing needs to be differentiable), and follow (R − b)·∇log p with a moving baseline.

The gradient strategy takes `arch_loss(supernet, ce) -> loss`, the architecture loss built from the
cross-entropy of the step and any differentiable term on α (see `objective.LatencyObjective`; without
it the loss is CE); REINFORCE takes a `reward`. Whatever either reports in a `last` dict is logged,
and its `state_dict`, if it has one (an adapted latency weight), is checkpointed with the strategy's.

Under torchrun both take the run's `Dist`: the sampled paths are checked to agree across processes,
α gradients are averaged over them, and REINFORCE scores a sample by its accuracy over all of them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
from torch import nn

from proxyless.arch import Arch
from proxyless.errors import NonFiniteLossError
from proxyless.infra.distributed import Dist
from proxyless.search.mixed_op import TwoPaths
from proxyless.search.signal import GradientSignal
from proxyless.search.supernet import SuperNet

ArchLoss = Callable[[SuperNet, torch.Tensor], torch.Tensor]  # (supernet, cross-entropy) -> loss
Reward = Callable[[Arch, float], float]  # (sampled arch, its accuracy on a valid batch) -> reward


class ArchStrategy(Protocol):
    def step(self, supernet: SuperNet, images: torch.Tensor, targets: torch.Tensor,
             generator: torch.Generator) -> dict[str, float]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def make_arch_optimizer(supernet: SuperNet, lr: float) -> torch.optim.Adam:
    """Adam with β1 = 0, as in ProxylessNAS: binarized gradients are too noisy for momentum."""
    return torch.optim.Adam(supernet.arch_parameters(), lr=lr, betas=(0.0, 0.999), eps=1e-8)


@contextlib.contextmanager
def frozen(params: list[nn.Parameter]) -> Iterator[None]:
    """No gradients for `params` inside the block: the arch step builds no weight gradients."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def entropy(p: torch.Tensor) -> float:
    return float(-(p * p.clamp_min(1e-12).log()).sum())


class GradientStrategy:
    """ProxylessNAS-G: `mode='two'` (binarized, memory of one path) or `mode='full'` (all paths)."""

    def __init__(self, supernet: SuperNet, lr: float = 1e-3, mode: str = "two", arch_loss: ArchLoss | None = None,
                 dist: Dist | None = None):
        if mode not in ("two", "full"):
            raise ValueError(f"mode must be 'two' or 'full', got {mode!r}")
        self.mode, self.arch_loss, self.dist = mode, arch_loss, dist or Dist()
        self.optimizer = make_arch_optimizer(supernet, lr)
        self.criterion = nn.CrossEntropyLoss()
        self.signal = GradientSignal()  # the cross-entropy's α gradients: drift against noise

    def step(self, supernet: SuperNet, images: torch.Tensor, targets: torch.Tensor,
             generator: torch.Generator) -> dict[str, float]:
        # 1. sample the paths: two per layer, or all of them
        plan = supernet.sample_two(generator) if self.mode == "two" else [None] * len(supernet.mixed_ops())
        if self.mode == "two":
            self.dist.check_same([i for paths in plan for i in (paths.active, paths.inactive)],
                                 "the paths of an architecture step")
        self.optimizer.zero_grad(set_to_none=True)
        # 2. forward and backward with frozen weights: only α (and activations) get gradients. The loss is
        # built on a detached copy of the cross-entropy, so that the network's backward gives the
        # cross-entropy's own α gradient (recorded in `signal`) before the latency term's is added:
        # ∇loss = ∂loss/∂ce · ∇ce + the latency term's direct gradient, as one backward of the loss gives
        alphas = supernet.arch_parameters()
        with frozen(supernet.weight_parameters()):
            ce = self.criterion(supernet(images, plan), targets)
            ce_value = ce.detach().requires_grad_()
            loss = self.arch_loss(supernet, ce_value) if self.arch_loss else ce_value
            if self.dist.any(not torch.isfinite(loss)):  # before α is touched, on every rank
                raise NonFiniteLossError(f"architecture loss became {loss.item()}; lower --arch-lr "
                                         "(α and the last checkpoint are intact)")
            d_ce, *direct = torch.autograd.grad(loss, [ce_value, *alphas], allow_unused=True)
            ce.backward()
        self.signal.add([torch.zeros_like(a) if a.grad is None else a.grad for a in alphas])
        with torch.no_grad():  # α.grad as loss.backward() leaves it (None where nothing reached it)
            for alpha, extra in zip(alphas, direct):
                if alpha.grad is not None:
                    alpha.grad.mul_(d_ce)
                if extra is not None:
                    alpha.grad = extra if alpha.grad is None else alpha.grad.add_(extra)
        self.dist.average_gradients(alphas)  # the mean over ranks' shares of the batch
        # 3. update α; for two paths, keep the probability mass of the unsampled candidates
        old = [alpha.detach().clone() for alpha in alphas]
        self.optimizer.step()
        if self.mode == "two":
            rescale_two_paths(supernet, old, plan)
        return {"arch_ce": ce.item(), "arch_loss": loss.item(), **_reported(self.arch_loss)}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "objective": _state_of(self.arch_loss),
                "signal": self.signal.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        _load_state(self.arch_loss, state.get("objective"))
        if "signal" in state:  # checkpoints from before 2026-12-05 have none: counted from the resume on
            self.signal.load_state_dict(state["signal"])


def _reported(part: object) -> dict[str, float]:
    return dict(getattr(part, "last", {}))


def _state_of(part: object) -> dict | None:
    return part.state_dict() if hasattr(part, "state_dict") else None


def _load_state(part: object, state: dict | None) -> None:
    if state is not None and hasattr(part, "load_state_dict"):
        part.load_state_dict(state)


@torch.no_grad()
def rescale_two_paths(supernet: SuperNet, old: list[torch.Tensor], plan: list[TwoPaths]) -> None:
    """Shift the two updated logits of each layer so that Σ exp over them is what it was before.

    The softmax normaliser is then unchanged, so every unsampled candidate keeps its probability.
    """
    for alpha, before, paths in zip(supernet.arch_parameters(), old, plan):
        index = torch.tensor([paths.active, paths.inactive], device=alpha.device)
        offset = torch.logsumexp(before[index], 0) - torch.logsumexp(alpha[index], 0)
        alpha[index] += offset


class ReinforceStrategy:
    """ProxylessNAS-R: ∇α = (R − b)·∇log p(sampled arch), b a moving average of R."""

    def __init__(self, supernet: SuperNet, reward: Reward | None = None, lr: float = 1e-3,
                 baseline_decay: float = 0.9, dist: Dist | None = None):
        self.reward = reward or (lambda arch, accuracy: accuracy)
        self.dist = dist or Dist()
        self.baseline_decay = baseline_decay
        self.baseline: float | None = None
        self.optimizer = make_arch_optimizer(supernet, lr)

    def step(self, supernet: SuperNet, images: torch.Tensor, targets: torch.Tensor,
             generator: torch.Generator) -> dict[str, float]:
        # 1. sample a whole architecture and score it on the valid batch (no gradients needed)
        indices = supernet.sample_single(generator)
        self.dist.check_same(indices, "the architecture REINFORCE sampled")
        with torch.no_grad():
            accuracy = self.dist.mean(float((supernet(images, indices).argmax(1) == targets).float().mean()))
        reward = float(self.reward(supernet.arch_of(indices), accuracy))
        if not math.isfinite(reward):  # the same on every rank: so is the accuracy it is computed from
            raise NonFiniteLossError(f"the reward function returned {reward}; it must be a finite number "
                                     "(α and the last checkpoint are intact)")
        # 2. advantage against the moving-average baseline (the first sample sets the baseline)
        baseline = reward if self.baseline is None else self.baseline
        advantage = reward - baseline
        self.baseline = self.baseline_decay * baseline + (1 - self.baseline_decay) * reward
        # 3. ascend (R − b)·log p(sample): minimise its negative
        log_p = sum(torch.log_softmax(m.alpha, 0)[i] for m, i in zip(supernet.mixed_ops(), indices))
        self.optimizer.zero_grad(set_to_none=True)
        (-advantage * log_p).backward()
        self.optimizer.step()
        return {"reward": reward, "baseline": self.baseline, "arch_accuracy": accuracy,
                **_reported(self.reward)}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "baseline": self.baseline,
                "objective": _state_of(self.reward)}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        _load_state(self.reward, state.get("objective"))
