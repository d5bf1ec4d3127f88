"""Classification metrics as the AST paper computes them: mAP, mean AUC, d-prime and accuracy.

Per-class average precision and ROC AUC come from scikit-learn, one class at a time, exactly as
the official AST evaluation does; the means are taken over the classes where both are defined.
A class without a positive example (or without a negative one) has no ROC AUC and an AP that says
nothing, so it is left out of every mean and listed in `Metrics.excluded` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .labels import LabelSet

__all__ = ["ExcludedClass", "Metrics", "accuracy", "d_prime", "evaluate_scores"]

# Soft targets (mixup, distillation) count as positive from this score on, for AP and AUC.
POSITIVE_THRESHOLD = 0.5


@dataclass(frozen=True)
class ExcludedClass:
    """A class left out of the means, and why."""

    index: int
    name: str
    reason: str


# eq=False: the per-class arrays make field-wise == ambiguous.
@dataclass(frozen=True, eq=False)
class Metrics:
    """Scores of one evaluation; per-class arrays hold NaN for excluded classes."""

    mAP: float
    mean_auc: float
    d_prime: float
    accuracy: float
    per_class_ap: np.ndarray
    per_class_auc: np.ndarray
    excluded: tuple[ExcludedClass, ...]
    n_examples: int
    labels: LabelSet | None = None

    @property
    def n_classes(self) -> int:
        return len(self.per_class_ap)

    def class_name(self, index: int) -> str:
        """The label name of output `index`, or `class_<index>` without a label set."""
        return _class_name(self.labels, index)

    def to_dict(self, *, per_class: bool = True) -> dict:
        """A JSON-ready dict; NaN and infinite values become None (JSON has neither)."""
        out = {
            "mAP": _json_float(self.mAP),
            "mean_auc": _json_float(self.mean_auc),
            "d_prime": _json_float(self.d_prime),
            "accuracy": _json_float(self.accuracy),
            "n_examples": self.n_examples,
            "n_classes": self.n_classes,
            "n_classes_scored": self.n_classes - len(self.excluded),
            "excluded": [
                {"index": e.index, "name": e.name, "reason": e.reason} for e in self.excluded
            ],
        }
        if per_class:
            out["per_class"] = [
                {
                    "index": i,
                    "name": self.class_name(i),
                    "ap": _json_float(self.per_class_ap[i]),
                    "auc": _json_float(self.per_class_auc[i]),
                }
                for i in range(self.n_classes)
            ]
        return out


def evaluate_scores(
    scores: np.ndarray, targets: np.ndarray, *, labels: LabelSet | None = None
) -> Metrics:
    """mAP, mean AUC, d-prime and accuracy of `scores` [n, C] against `targets` [n, C].

    Targets are 0/1 (multi-hot or one-hot) or soft scores, which count as positive from 0.5 on
    for AP and AUC. Scores are any monotone model output (sigmoid, softmax or logits).
    """
    scores, targets = _check_inputs(scores, targets)
    if labels is not None and len(labels) != scores.shape[1]:
        raise ValueError(
            f"label set has {len(labels)} classes but scores have {scores.shape[1]} columns"
        )
    positive = targets >= POSITIVE_THRESHOLD
    n_pos = positive.sum(axis=0)
    n_examples = scores.shape[0]
    ap = np.full(scores.shape[1], np.nan)
    auc = np.full(scores.shape[1], np.nan)
    excluded = []
    for k in range(scores.shape[1]):
        if n_pos[k] == 0 or n_pos[k] == n_examples:
            reason = "no positive example" if n_pos[k] == 0 else "no negative example"
            excluded.append(ExcludedClass(k, _class_name(labels, k), reason))
            continue
        ap[k] = average_precision_score(positive[:, k], scores[:, k])
        auc[k] = roc_auc_score(positive[:, k], scores[:, k])
    mean_auc = _mean_over_scored(auc)
    return Metrics(
        mAP=_mean_over_scored(ap),
        mean_auc=mean_auc,
        d_prime=d_prime(mean_auc),
        accuracy=_argmax_agreement(scores, targets),
        per_class_ap=ap,
        per_class_auc=auc,
        excluded=tuple(excluded),
        n_examples=n_examples,
        labels=labels,
    )


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of examples where argmax(scores) == argmax(targets), as the official code counts.

    For multi-label targets argmax picks the first positive class, so this is only meaningful
    for single-label data; use mAP there.
    """
    return _argmax_agreement(*_check_inputs(scores, targets))


def d_prime(auc: float) -> float:
    """sqrt(2) * Phi^-1(auc): infinite at AUC 0 or 1, NaN for NaN."""
    if math.isnan(auc):
        return math.nan
    if auc <= 0.0 or auc >= 1.0:
        return math.copysign(math.inf, auc - 0.5)
    return math.sqrt(2.0) * NormalDist().inv_cdf(auc)


def _mean_over_scored(per_class: np.ndarray) -> float:
    # Excluded classes hold NaN; with every class excluded there is no mean at all.
    scored = per_class[~np.isnan(per_class)]
    return float(scored.mean()) if scored.size else math.nan


def _class_name(labels: LabelSet | None, index: int) -> str:
    return labels.names[index] if labels is not None else f"class_{index}"


def _argmax_agreement(scores: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(scores.argmax(axis=1) == targets.argmax(axis=1)))


def _check_inputs(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    for name, array in (("scores", scores), ("targets", targets)):
        if array.ndim != 2:
            raise ValueError(f"{name} must be 2-D [n_examples, n_classes], got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contain NaN or infinite values")
    if scores.shape != targets.shape:
        raise ValueError(
            f"scores and targets must have the same shape, got {scores.shape} and {targets.shape}"
        )
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"need at least one example and one class, got shape {scores.shape}")
    if targets.min() < 0.0 or targets.max() > 1.0:
        raise ValueError(
            f"targets must lie in [0, 1], got values from {targets.min():g} to {targets.max():g}"
        )
    return scores, targets


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
