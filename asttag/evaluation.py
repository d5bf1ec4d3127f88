"""Evaluation: a model's scores on one split of a data set, and predictions saved for later.

A `Predictions` holds what scoring needs and what ensembling saved scores needs: the
probabilities per clip, the targets in the model's class order, the label set, the clip paths
(to line files up) and the model's identity. Metrics come from metrics.py. Saved predictions of
several models are ensembled here too, without running any model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path, sha256_file
from .choices import DEFAULT_DEVICE, Precision
from .datasets import DatasetSplits, Example
from .datasets.base import quote
from .ensemble import EnsembleError
from .fileformat import check_stamp, stamp
from .inference import predict_examples, target_matrix
from .labels import LabelSet, label_problems
from .metrics import Metrics, evaluate_scores
from .model import TaggingModel

__all__ = [
    "PREDICTIONS_FORMAT",
    "EvaluationError",
    "Predictions",
    "choose_split",
    "model_targets",
    "predict_split",
    "model_identity",
    "save_predictions",
    "load_predictions",
    "ensemble_predictions",
]

PREDICTIONS_FORMAT = "asttag-predictions"
PREDICTIONS_VERSION = 1


class EvaluationError(ValueError):
    """A split, label set or predictions file that cannot be evaluated: the message says why."""


@dataclass(frozen=True, eq=False)
class Predictions:
    """Scores of one model (or ensemble) on the clips of one split."""

    scores: np.ndarray  # (clips, classes) probabilities
    targets: np.ndarray  # (clips, classes), in the model's class order
    labels: LabelSet
    paths: tuple[str, ...]
    model: dict  # identity: {"source", "sha256"}, or {"ensemble": [identities]}

    def __post_init__(self) -> None:
        expected = (len(self.paths), len(self.labels))
        for name in ("scores", "targets"):
            shape = getattr(self, name).shape
            if shape != expected:
                raise ValueError(f"{name} have shape {shape}, expected (clips, classes) {expected}")

    def metrics(self) -> Metrics:
        return evaluate_scores(self.scores, self.targets, labels=self.labels)


def choose_split(splits: DatasetSplits, name: str | None = None) -> tuple[str, list[Example]]:
    """The split called `name`; by default the first the data set has of test, valid, train.

    A single manifest or class folder reads as a training split only, and is then evaluated
    whole; a data set with held-out data is evaluated on that.
    """
    available = {"test": splits.test, "valid": splits.valid, "train": splits.train}
    if name is None:
        name = next((k for k, v in available.items() if v), "test")
    if name not in available:
        raise EvaluationError(f"unknown split {name!r}; use train, valid or test")
    examples = available[name]
    if not examples:
        present = ", ".join(k for k, v in available.items() if v) or "none"
        raise EvaluationError(f"this data set has no {name} examples (splits present: {present})")
    return name, list(examples)


def model_targets(
    examples: Sequence[Example], *, data_labels: LabelSet, model_labels: LabelSet
) -> np.ndarray:
    """Targets (clips, model classes) with the data set's classes matched to the model's by id.

    Model classes the data set lacks get no positives (metrics then exclude them, with a note);
    data set classes the model lacks cannot be scored and are refused.
    """
    position = {label_id: i for i, label_id in enumerate(model_labels.ids)}
    unknown = [label_id for label_id in data_labels.ids if label_id not in position]
    if unknown:
        raise EvaluationError(
            f"{len(unknown)} of the data set's {len(data_labels)} classes are not among the "
            f"model's {len(model_labels)} (label ids {quote([repr(i) for i in unknown])}; the "
            f"model's begin with {model_labels.ids[0]!r})"
        )
    columns = [position[label_id] for label_id in data_labels.ids]
    targets = np.zeros((len(examples), len(model_labels)), dtype=np.float32)
    targets[:, columns] = target_matrix(examples, len(data_labels))
    return targets


def predict_split(
    model: TaggingModel,
    examples: Sequence[Example],
    *,
    data_labels: LabelSet,
    identity: dict,
    batch_size: int = 16,
    device: str = DEFAULT_DEVICE,
    workers: int = 0,
    precision: Precision = "fp32",
) -> Predictions:
    """Run `model` (an AST or an Ensemble) over `examples` and keep its scores with the targets.

    Each clip is one model input (cut or padded), as the paper evaluates; see predict_examples.
    """
    targets = model_targets(examples, data_labels=data_labels, model_labels=model.labels)
    scores = predict_examples(
        model, examples, batch_size=batch_size, device=device, workers=workers,
        precision=precision,
    )
    return Predictions(
        scores=np.asarray(scores, dtype=np.float32),
        targets=targets,
        labels=model.labels,
        paths=tuple(str(e.path) for e in examples),
        model=identity,
    )


def model_identity(source: str) -> dict:
    """Which model made some predictions: what was passed as --model, and the file's sha256."""
    path = Path(source).expanduser()
    return {"source": source, "sha256": sha256_file(path) if path.is_file() else None}


def save_predictions(predictions: Predictions, path: str | Path) -> Path:
    """Write predictions as a .npz file (no pickles inside), atomically."""
    path = Path(path)
    meta = {
        **stamp(PREDICTIONS_FORMAT, PREDICTIONS_VERSION),
        "multi_label": predictions.labels.multi_label,
        "model": predictions.model,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            scores=predictions.scores,
            targets=predictions.targets,
            paths=np.array(predictions.paths, dtype=str),
            label_ids=np.array(predictions.labels.ids, dtype=str),
            label_names=np.array(predictions.labels.names, dtype=str),
            meta=np.array(json.dumps(meta)),
        )
    return path


def load_predictions(path: str | Path) -> Predictions:
    """Read a file written by `save_predictions`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as e:
        raise EvaluationError(f"{path}: not a readable predictions file ({e})") from None
    try:
        meta = json.loads(str(arrays["meta"]))
        check_stamp(meta, source=path, format_name=PREDICTIONS_FORMAT,
                    max_version=PREDICTIONS_VERSION, what="asttag predictions", error=EvaluationError)
        return Predictions(
            scores=arrays["scores"],
            targets=arrays["targets"],
            labels=LabelSet(
                tuple(arrays["label_names"].tolist()),
                tuple(arrays["label_ids"].tolist()),
                bool(meta["multi_label"]),
            ),
            paths=tuple(arrays["paths"].tolist()),
            model=meta["model"],
        )
    except EvaluationError:
        raise
    except (KeyError, ValueError) as e:  # a missing array or key, bad JSON, bad label set or shape
        raise EvaluationError(f"{path}: damaged predictions file ({e})") from None


def ensemble_predictions(predictions: Sequence[Predictions]) -> Predictions:
    """The mean of several models' saved scores on the same clips, without running a model.

    Label sets must match and the clips must be the same set with the same targets; the
    clips may come in any order (the first file's order is kept).
    """
    if not predictions:
        raise EnsembleError("no predictions to ensemble")
    first = predictions[0]
    total = first.scores.astype(np.float64)
    for n, other in enumerate(predictions[1:], start=1):
        problems = label_problems(first.labels, other.labels)
        if problems:
            raise EnsembleError(f"predictions {n} do not fit predictions 0: " + "; ".join(problems))
        index = _alignment(first.paths, other.paths, what=f"predictions {n}")
        if not np.array_equal(other.targets[index], first.targets):
            raise EnsembleError(
                f"predictions {n} hold other targets than predictions 0 for the same clips"
            )
        total += other.scores[index]
    return Predictions(
        scores=(total / len(predictions)).astype(first.scores.dtype),
        targets=first.targets,
        labels=first.labels,
        paths=first.paths,
        model={"ensemble": [p.model for p in predictions]},
    )


def _alignment(reference: tuple[str, ...], paths: tuple[str, ...], *, what: str) -> np.ndarray:
    """Row indices that put `paths` in the order of `reference`; both must list the same clips."""
    position = {path: i for i, path in enumerate(paths)}
    same = len(position) == len(paths) == len(reference) and set(position) == set(reference)
    if not same:
        missing, extra = sorted(set(reference) - set(paths)), sorted(set(paths) - set(reference))
        detail = "; ".join(
            [f"{len(missing)} clip(s) of predictions 0 missing, e.g. {missing[0]}"] * bool(missing)
            + [f"{len(extra)} clip(s) not in predictions 0, e.g. {extra[0]}"] * bool(extra)
        ) or "a clip listed twice"
        raise EnsembleError(f"{what} cover other clips than predictions 0 ({detail})")
    return np.array([position[path] for path in reference], dtype=np.int64)
