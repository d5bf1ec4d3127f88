"""The learning-rate schedule: warmup, then a step decay per epoch, as the official recipes."""

from __future__ import annotations

from ..recipes import Recipe

__all__ = ["learning_rate"]


def learning_rate(recipe: Recipe, *, epoch: int, step: int) -> float:
    """The lr of optimiser step `step` (counted from 1 over the run) in `epoch` (from 1).

    As MultiStepLR stepped after each epoch with milestones range(lr_decay_start, 1000,
    lr_decay_step): epoch e's lr is decayed once per milestone below e. Warmup scales the
    first `warmup_steps` steps by step / warmup_steps.
    """
    decays = len(range(recipe.lr_decay_start, min(epoch, 1000), recipe.lr_decay_step))
    lr = recipe.lr * recipe.lr_decay**decays
    if step <= recipe.warmup_steps:
        lr *= step / recipe.warmup_steps
    return lr
