"""A model's recommended event threshold: chosen on held-out data, kept in its checkpoint.

A checkpoint's `extra` may hold {"event_threshold": {"value": 0.31, "rule": "..."}}: the score
over which the tagger calls a window an event when the user gives no threshold, and how that
number was chosen. asttag's training records one after each validated epoch (`calibrate`);
models that carry none get 0.5, said as the fallback it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FALLBACK", "KEY", "Threshold", "calibrate", "recommended"]

KEY = "event_threshold"
_GRID = np.round(np.arange(1, 100) / 100, 2)  # 0.01 .. 0.99


@dataclass(frozen=True)
class Threshold:
    value: float
    rule: str  # how the value was chosen, in words

    def to_dict(self) -> dict:
        return {"value": self.value, "rule": self.rule}


FALLBACK = Threshold(0.5, "fallback: no threshold was chosen for this model on held-out data")


def calibrate(scores: np.ndarray, targets: np.ndarray, *, held_out: str) -> Threshold:
    """The threshold on `scores` (clips, classes) with the best micro-F1 against `targets`.

    Positives are targets of 0.5 or more (soft targets included); the candidates are 0.01 to
    0.99 in steps of 0.01, ties going to the one nearest 0.5. Without a single positive there
    is nothing to choose by: the fallback. `held_out` names the data, for the record.
    """
    positives = np.asarray(targets) >= 0.5
    total = int(positives.sum())
    if total == 0:
        return FALLBACK
    scores = np.asarray(scores, dtype=np.float64)
    best, best_f1 = 0.5, -1.0
    for t in sorted(_GRID, key=lambda t: abs(t - 0.5)):  # nearest 0.5 first: it wins ties
        predicted = scores >= t
        hits = int(np.count_nonzero(predicted & positives))
        f1 = 2 * hits / (int(predicted.sum()) + total)
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return Threshold(best, f"maximises micro-F1 ({best_f1:.3f}) against the targets of {held_out} "
                           "over 0.01-0.99 in steps of 0.01 (positives: targets >= 0.5)")


def recommended(model: Any) -> Threshold:
    """The threshold `model`'s checkpoint recommends, else the fallback."""
    record = (getattr(model, "extra", None) or {}).get(KEY)
    if not isinstance(record, dict):
        return FALLBACK
    value, rule = record.get("value"), record.get("rule")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        return FALLBACK
    return Threshold(float(value), str(rule or "recorded without a rule"))
