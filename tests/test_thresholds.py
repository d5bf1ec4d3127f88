"""The recommended event threshold: calibration on held-out targets, reading it back."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from asttag import thresholds
from asttag.thresholds import FALLBACK, Threshold, calibrate, recommended


def test_calibration_picks_the_threshold_with_the_best_micro_f1():
    rng = np.random.default_rng(0)
    targets = rng.random((400, 6)) < 0.2
    # Positives score around 0.3, negatives around 0.1: 0.5 finds almost nothing.
    scores = np.where(targets, 0.3, 0.1) + rng.normal(0, 0.03, targets.shape)
    chosen = calibrate(scores, targets, held_out="400 validation clips")
    assert 0.15 <= chosen.value <= 0.25
    f1 = {t: 2 * np.sum((scores >= t) & targets) / (np.sum(scores >= t) + targets.sum())
          for t in np.round(np.arange(1, 100) / 100, 2)}
    assert f1[chosen.value] == max(f1.values()) and f1[chosen.value] > 0.99 and f1[0.5] < 0.01
    assert "micro-F1" in chosen.rule and "400 validation clips" in chosen.rule


def test_without_positives_or_a_record_the_fallback_is_said_as_such():
    assert calibrate(np.ones((3, 2)), np.zeros((3, 2)), held_out="x") == FALLBACK
    assert FALLBACK.value == 0.5 and "fallback" in FALLBACK.rule

    class Model:
        extra: ClassVar[dict] = {}

    assert recommended(Model()) == FALLBACK
    Model.extra = {thresholds.KEY: {"value": 1.5, "rule": "broken"}}
    assert recommended(Model()) == FALLBACK
    Model.extra = {thresholds.KEY: Threshold(0.3, "chosen").to_dict()}
    assert recommended(Model()) == Threshold(0.3, "chosen")
