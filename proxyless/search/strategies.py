"""Architecture-update strategies behind one small interface, so the search loop never branches on type.

    strategy.step(supernet, images, targets, generator) -> dict of floats to log
    strategy.state_dict() / load_state_dict(state)       -> for checkpoints

A step is two halves, `measure` (sample, run the valid batch, take the gradients: α untouched) and
`learn` (update the α loaded in the supernet from a measurement), so that in a family of latency targets
one measurement can teach every target's α (`shares_steps`): the two-path gradient of the cross-entropy
depends on α only through the softmax over the two sampled logits, so it carries over to another α exactly
(`ArchGradient.on`). REINFORCE's sample is its own policy's, so it does not share.

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
from dataclasses import dataclass
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
    shares_steps: bool  # whether `learn` takes a measurement made with another α (another family member's)

    def step(self, supernet: SuperNet, images: torch.Tensor, targets: torch.Tensor,
             generator: torch.Generator) -> dict[str, float]: ...

    def measure(self, supernet: SuperNet, images: torch.Tensor, targets: torch.Tensor,
                generator: torch.Generator) -> object: ...

    def learn(self, supernet: SuperNet, measured: object) -> dict[str, float]: ...

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


@dataclass
class ArchGradient:
    """What an architecture step measured: its paths, the cross-entropy, and the cross-entropy's gradient
    of each layer's α (None where none reached it) at the α it was taken with."""

    plan: list[TwoPaths | None]
    ce: float
    grads: list[torch.Tensor | None]
    alphas: list[torch.Tensor]

    def on(self, alphas: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """The same step's gradient for other `alphas` (of the same supernet), for two paths: each layer's
        is p_a·p_b·(dL/dg_a − dL/dg_b) on its two sampled logits a, b, with p the softmax of the two, and
        dL/dg does not depend on α, so it is rescaled by the ratio of p_a·p_b under the new and the old α."""
        grads = []
        for grad, old, new, paths in zip(self.grads, self.alphas, alphas, self.plan):
            if grad is None or torch.equal(new.detach(), old):  # the α it was taken with
                grads.append(grad)
                continue
            if paths is None:
                raise ValueError("a full (all-path) step's gradient does not carry over to another α")
            pair = torch.tensor([paths.active, paths.inactive], device=grad.device)
            ratio = _pair_variance(new.detach()[pair]) / _pair_variance(old[pair])
            grads.append(grad * ratio)
        return grads


def _pair_variance(logits: torch.Tensor) -> torch.Tensor:
    """p_a·p_b for the softmax p of two logits: the scale of their binary-connect gradient."""
    p = torch.softmax(logits, dim=0)
    return p[0] * p[1]


class GradientStrategy:
    """ProxylessNAS-G: `mode='two'` (binarized, memory of one path) or `mode='full'` (all paths)."""

    def __init__(self, supernet: SuperNet, lr: float = 1e-3, mode: str = "two", arch_loss: ArchLoss | None = None,
                 dist: Dist | None = None):
        if mode not in ("two", "full"):
            raise ValueError(f"mode must be 'two' or 'full', got {mode!r}")
        self.mode, self.arch_loss, self.dist = mode, arch_loss, dist or Dist()
        self.shares_steps = mode == "two"
        self.optimizer = make_arch_optimizer(supernet, lr)
        self.criterion = nn.CrossEntropyLoss()
        self.signal = GradientSignal()  # the cross-entropy's α gradients: drift against noise

    def step(self, supernet: SuperNet, images: torch.Tensor, targets: torch.Tensor,
             generator: torch.Generator) -> dict[str, float]:
        return self.learn(supernet, self.measure(supernet, images, targets, generator))

    def measure(self, supernet: SuperNet, images: torch.Tensor, targets: torch.Tensor,
                generator: torch.Generator) -> ArchGradient:
        """Sample the paths (two per layer, or all of them), run the batch with frozen weights and take the
        cross-entropy's α gradients (averaged over torchrun's processes); α itself is left as it was."""
        plan = supernet.sample_two(generator) if self.mode == "two" else [None] * len(supernet.mixed_ops())
        if self.mode == "two":
            self.dist.check_same([i for paths in plan for i in (paths.active, paths.inactive)],
                                 "the paths of an architecture step")
        alphas = supernet.arch_parameters()
        with frozen(supernet.weight_parameters()):
            ce = self.criterion(supernet(images, plan), targets)
            if self.dist.any(not torch.isfinite(ce)):  # before α is touched, on every rank
                raise NonFiniteLossError(f"architecture loss became {ce.item()}; lower --arch-lr "
                                         "(α and the last checkpoint are intact)")
            grads = torch.autograd.grad(ce, alphas, allow_unused=True)
        # the whole batch's: the mean over ranks' shares, so that every rank takes the same step
        grads = self.dist.average_gradients(list(grads))
        return ArchGradient(plan, self.dist.mean(ce.item()), grads, [alpha.detach().clone() for alpha in alphas])

    def learn(self, supernet: SuperNet, measured: ArchGradient) -> dict[str, float]:
        """Update the loaded α from `measured` (taken with it or, for two paths, with another α): the
        cross-entropy's gradient, recorded in `signal`, scaled by ∂loss/∂ce, plus the latency term's own
        gradient, as one backward of the architecture loss would give; then Adam, and for two paths the
        rescaling that keeps the unsampled candidates' probabilities."""
        alphas = supernet.arch_parameters()
        ce_grads = measured.on(alphas)
        self.signal.add([torch.zeros_like(a) if g is None else g for a, g in zip(alphas, ce_grads)])
        ce = torch.tensor(measured.ce, device=alphas[0].device, requires_grad=True)  # where the latency term is
        loss = self.arch_loss(supernet, ce) if self.arch_loss else ce
        if self.dist.any(not torch.isfinite(loss)):  # before α is touched, on every rank
            raise NonFiniteLossError(f"architecture loss became {loss.item()}; lower --arch-lr "
                                     "(α and the last checkpoint are intact)")
        d_ce, *direct = torch.autograd.grad(loss, [ce, *alphas], allow_unused=True)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():  # α.grad as loss.backward() would leave it (None where nothing reached it)
            for alpha, grad, extra in zip(alphas, ce_grads, direct):
                total = None if grad is None else grad * d_ce.to(grad.dtype)
                if extra is not None:
                    total = extra if total is None else total + extra
                alpha.grad = total
        old = [alpha.detach().clone() for alpha in alphas]
        self.optimizer.step()
        if self.mode == "two":
            rescale_two_paths(supernet, old, measured.plan)
        return {"arch_ce": measured.ce, "arch_loss": loss.item(), **_reported(self.arch_loss)}

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
    """ProxylessNAS-R: ∇α = (R − b)·∇log p(sampled arch), b a moving average of R. Its sample is drawn
    from its own p, so a measurement teaches only the α it was drawn with (`shares_steps` False)."""

    shares_steps = False

    def __init__(self, supernet: SuperNet, reward: Reward | None = None, lr: float = 1e-3,
                 baseline_decay: float = 0.9, dist: Dist | None = None):
        self.reward = reward or (lambda arch, accuracy: accuracy)
        self.dist = dist or Dist()
        self.baseline_decay = baseline_decay
        self.baseline: float | None = None
        self.optimizer = make_arch_optimizer(supernet, lr)

    def step(self, supernet: SuperNet, images: torch.Tensor, targets: torch.Tensor,
             generator: torch.Generator) -> dict[str, float]:
        return self.learn(supernet, self.measure(supernet, images, targets, generator))

    def measure(self, supernet: SuperNet, images: torch.Tensor, targets: torch.Tensor,
                generator: torch.Generator) -> tuple[list[int], float]:
        """A whole architecture sampled from p and its accuracy on the valid batch (over all processes)."""
        indices = supernet.sample_single(generator)
        self.dist.check_same(indices, "the architecture REINFORCE sampled")
        with torch.no_grad():
            accuracy = self.dist.mean(float((supernet(images, indices).argmax(1) == targets).float().mean()))
        return indices, accuracy

    def learn(self, supernet: SuperNet, measured: tuple[list[int], float]) -> dict[str, float]:
        # 1. reward the sample (the same on every rank: so is the accuracy it is computed from)
        indices, accuracy = measured
        reward = float(self.reward(supernet.arch_of(indices), accuracy))
        if not math.isfinite(reward):
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
