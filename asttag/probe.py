"""A linear probe: a new classifier head trained on a frozen model's embeddings.

The encoder and its head norm stay as they are; only the final linear layer is learnt, by
L2-regularised logistic regression (scikit-learn) on the embeddings of every window of the
training clips, each window labelled as its clip. Single-label data gets one multinomial
(softmax) regression, multi-label data one binary (sigmoid) regression per class, which are the
losses the engine fine-tunes with (cross-entropy, BCE). The result is an ordinary AST with the
data set's labels: `asttag tag -m probe.safetensors` runs it, window by window as it was fitted,
clip scores aggregated as for any model (mean for single-label, max for multi-label).
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from .datasets import DatasetSplits, Example, target_vector
from .embedding import Embedder, EmbeddingResult, embedding_model
from .labels import LabelSet
from .metrics import Metrics, evaluate_scores
from .model import AST, TaggingModel
from .tagger import TagFailure, aggregate_windows, default_aggregate

__all__ = ["ProbeError", "ProbeResult", "train_probe", "with_head"]

log = logging.getLogger(__name__)


class ProbeError(ValueError):
    """Data a probe cannot be trained on; the message names the file or class."""


@dataclass
class ProbeResult:
    model: AST  # the input model with the new head and the data set's labels
    train_windows: int
    train_metrics: Metrics  # per clip, as `asttag tag` would score the clips
    valid_metrics: Metrics | None
    embed_seconds: float  # running the frozen model over the clips
    fit_seconds: float  # the regression

    def summary(self) -> dict:
        return {
            "train_clips": self.train_metrics.n_examples, "train_windows": self.train_windows,
            "classes": len(self.model.labels),
            "train": self.train_metrics.to_dict(per_class=False),
            "valid": self.valid_metrics.to_dict(per_class=False) if self.valid_metrics else None,
            "embed_seconds": round(self.embed_seconds, 3), "fit_seconds": round(self.fit_seconds, 3),
        }


def train_probe(
    model: TaggingModel,
    splits: DatasetSplits,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
    **embedder_settings: object,
) -> ProbeResult:
    """Fit a new head for `splits.labels` on `model`'s embeddings of `splits.train`; score the
    train and valid clips with it.

    `c` is the inverse L2 strength (scikit-learn's C). `embedder_settings` go to `Embedder`
    (window, hop, pad, device, precision, batch_size, workers).
    """
    if not c > 0:
        raise ProbeError(f"the regularisation c must be above 0, got {c}")
    if not splits.train:
        raise ProbeError("the training split holds no clips")
    encoder = embedding_model(model)
    embedder = Embedder(encoder, **embedder_settings)  # type: ignore[arg-type]
    started = time.perf_counter()
    train = _embed(embedder, splits.train)
    valid = _embed(embedder, splits.valid) if splits.valid else None
    embed_seconds = time.perf_counter() - started

    features = _head_inputs(encoder, train)
    targets = np.concatenate([np.repeat(_targets([e], splits.labels), len(r.embeddings), axis=0)
                              for e, r in zip(splits.train, train)])
    started = time.perf_counter()
    weight, bias = _fit(features, targets, labels=splits.labels, c=c, max_iter=max_iter)
    fit_seconds = time.perf_counter() - started

    probe = with_head(encoder, weight, bias, splits.labels)
    return ProbeResult(
        model=probe, train_windows=len(features),
        train_metrics=_clip_metrics(probe, splits.train, train),
        valid_metrics=_clip_metrics(probe, splits.valid, valid) if valid is not None else None,
        embed_seconds=embed_seconds, fit_seconds=fit_seconds,
    )


def with_head(model: AST, weight: np.ndarray, bias: np.ndarray, labels: LabelSet) -> AST:
    """`model`'s encoder and head norm under a new linear head (classes, D) for `labels`."""
    config = model.config.replace(num_classes=len(labels))
    probe = AST(config, features=model.features, labels=labels)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    state["head.weight"] = torch.as_tensor(weight, dtype=torch.float32)
    state["head.bias"] = torch.as_tensor(bias, dtype=torch.float32)
    probe.load_state_dict({k: v.float().cpu() for k, v in state.items()})
    return probe.eval()


def _embed(embedder: Embedder, examples: Sequence[Example]) -> list[EmbeddingResult]:
    results = []
    for outcome in embedder.tag_many([str(e.path) for e in examples]):
        if isinstance(outcome, TagFailure):
            raise ProbeError(f"{outcome.path}: {outcome.reason}")
        results.append(cast(EmbeddingResult, outcome))  # an Embedder yields embeddings
    return results


def _targets(examples: Sequence[Example], labels: LabelSet) -> np.ndarray:
    return np.stack([target_vector(e, len(labels)) for e in examples]).astype(np.float32)


def _head_inputs(model: AST, results: Sequence[EmbeddingResult]) -> np.ndarray:
    """What the head's linear layer sees: the head norm of each window's embedding."""
    norm = copy.deepcopy(model.head_norm).float().cpu()  # the caller's model stays as it is
    with torch.no_grad():
        return norm(torch.from_numpy(np.concatenate([r.embeddings for r in results]))).numpy()


def _fit(features: np.ndarray, targets: np.ndarray, *, labels: LabelSet, c: float,
         max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights (classes, D) and biases (classes,) of the regression; logits = x W^T + b."""
    from sklearn.linear_model import LogisticRegression

    def fit(y: np.ndarray, what: str) -> LogisticRegression:
        # scikit-learn warns through `warnings`; the library logs instead, once per regression.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = LogisticRegression(C=c, max_iter=max_iter).fit(features, y)
        if fitted.n_iter_.max() >= max_iter:
            log.warning("the probe's regression (%s) stopped at %d iterations before converging; "
                        "its metrics say how good it is", what, max_iter)
        return fitted

    if not labels.multi_label:
        classes = targets.argmax(axis=1)
        missing = sorted(set(range(len(labels))) - set(classes.tolist()))
        if missing:
            raise ProbeError(f"class {labels.names[missing[0]]!r} has no training clip")
        fitted = fit(classes, "all classes")
        if len(labels) == 2:  # one logit difference; split it evenly over the two classes
            w, b = fitted.coef_[0] / 2, fitted.intercept_[0] / 2
            return np.stack([-w, w]), np.asarray([-b, b])
        return fitted.coef_, fitted.intercept_
    weights, biases = [], []
    for k, name in enumerate(labels.names):
        positive = targets[:, k] >= 0.5
        if positive.all() or not positive.any():
            raise ProbeError(f"class {name!r}: {'every' if positive.all() else 'no'} training "
                             "clip has it, so a probe cannot learn it")
        fitted = fit(positive, repr(name))
        weights.append(fitted.coef_[0])
        biases.append(fitted.intercept_[0])
    return np.stack(weights), np.asarray(biases)


def _clip_metrics(probe: AST, examples: Sequence[Example], results: Sequence[EmbeddingResult]) -> Metrics:
    """Metrics of clip scores aggregated from window scores as the tagger does by default."""
    with torch.no_grad():
        clips = []
        for r in results:
            scores = probe.probabilities(probe.classify(torch.from_numpy(r.embeddings))).numpy()
            clips.append(aggregate_windows(scores, default_aggregate(probe.labels)))
    return evaluate_scores(np.stack(clips), _targets(examples, probe.labels), labels=probe.labels)
