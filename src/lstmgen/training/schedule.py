"""The learning rate: warm-up, then constant, cosine or plateau."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig
from .state import Position


def lr_at(config: TrainConfig, step: int, progress: float, plateau_scale: float = 1.0) -> float:
    """The rate for ``step``; ``progress`` is the fraction of the planned
    steps or minutes spent (cosine), ``plateau_scale`` the plateau factor so far."""
    c = config
    if c.warmup_steps and step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    if c.lr_schedule == "constant":
        return c.lr
    if c.lr_schedule == "plateau":
        return c.lr * plateau_scale
    progress = min(max(progress, 0.0), 1.0)
    floor = c.lr / 10
    return floor + (c.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def plateau_after_validation(config: TrainConfig, pos: Position, improved: bool) -> None:
    """'plateau' lowers the rate after ``plateau_patience`` validations in a
    row without a new best held-out loss, then counts again from zero."""
    pos.plateau_stale = 0 if improved else pos.plateau_stale + 1
    if config.lr_schedule == "plateau" and pos.plateau_stale >= config.plateau_patience:
        pos.plateau_scale *= config.plateau_factor
        pos.plateau_stale = 0
