"""The training losses, on logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..recipes import RecipeError

__all__ = ["training_loss"]


def training_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """'bce': binary cross-entropy on logits. 'ce': cross-entropy against the target
    distributions, so mixed or soft targets stay soft (not collapsed to an argmax)."""
    logits = logits.float()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets)
    if kind == "ce":
        return F.cross_entropy(logits, targets)
    raise RecipeError(f"unknown loss {kind!r}: use bce or ce")
