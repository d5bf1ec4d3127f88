"""Training losses on logits, soft targets kept soft."""

from __future__ import annotations

import pytest
import torch

from asttag.recipes import RecipeError
from asttag.training import training_loss


def test_losses_work_on_logits_and_keep_soft_targets_soft():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.5, 0.3]])
    expected_ce = -(soft * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(training_loss(logits, soft, "ce"), expected_ce)
    torch.testing.assert_close(training_loss(logits, soft, "bce"),
                               torch.nn.BCEWithLogitsLoss()(logits, soft))
    with pytest.raises(RecipeError, match="unknown loss"):
        training_loss(logits, soft, "hinge")
