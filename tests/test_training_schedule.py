"""The learning-rate schedule: step decay as MultiStepLR steps it, and warm-up."""

from __future__ import annotations

import pytest
import torch

from asttag.recipes import load_recipe
from asttag.training import learning_rate


@pytest.mark.parametrize("name", ["esc50", "speechcommands", "audioset-balanced", "audioset-full"])
def test_step_decay_follows_multisteplr_stepped_per_epoch(name):
    recipe = load_recipe(name)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, list(range(recipe.lr_decay_start, 1000, recipe.lr_decay_step)), gamma=recipe.lr_decay)
    for epoch in range(1, recipe.epochs + 1):
        after_warmup = recipe.warmup_steps + 1
        assert learning_rate(recipe, epoch=epoch, step=after_warmup) == pytest.approx(
            optimizer.param_groups[0]["lr"], rel=1e-12)
        optimizer.step()
        scheduler.step()


def test_warmup_scales_the_first_thousand_steps():
    recipe = load_recipe("audioset-balanced")
    assert learning_rate(recipe, epoch=1, step=1) == pytest.approx(recipe.lr / 1000)
    assert learning_rate(recipe, epoch=1, step=500) == pytest.approx(recipe.lr / 2)
    assert learning_rate(recipe, epoch=1, step=1000) == learning_rate(recipe, epoch=1, step=5000) == recipe.lr
