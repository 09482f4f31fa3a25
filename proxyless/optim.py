"""Optimizer and learning-rate schedule for training weights.

SGD with Nesterov momentum; weight decay only on conv/linear weights (never on BN or biases,
selected by parameter rank: a 1-d tensor is a scale or a bias); cosine decay after a linear warmup.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: multi-dimensional weights with decay, 1-d tensors (BN, biases) without."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_sgd(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 4e-5) -> torch.optim.SGD:
    return torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=True)


class WarmupCosine:
    """lr multiplier for a step: linear warmup, then cosine decay to zero.

    A callable object (not a lambda), so the scheduler state stays plain data.
    """

    def __init__(self, total_steps: int, warmup_steps: int) -> None:
        self.total_steps = max(1, total_steps)
        self.warmup_steps = min(warmup_steps, self.total_steps - 1)

    def __call__(self, step: int) -> float:
        # 1. warmup: ramp linearly from 1/warmup to 1
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        # 2. cosine: from 1 at the end of warmup down to 0 at the last step
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        # 3. past the end (a resumed run with more steps): stay at 0
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                   warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps))


def load_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict) -> None:
    """Restore a saved schedule's position but keep the scheduler's own length, so that a run resumed
    with more epochs stretches its cosine from where it stands instead of sitting at zero past the old end."""
    lengths = [dict(vars(schedule)) for schedule in scheduler.lr_lambdas]
    scheduler.load_state_dict(state)
    for schedule, length in zip(scheduler.lr_lambdas, lengths):
        vars(schedule).update(length)
