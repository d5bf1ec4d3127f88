import json
import math
from statistics import NormalDist

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from asttag.labels import LabelSet
from asttag.metrics import accuracy, d_prime, evaluate_scores


def random_multilabel(n=200, classes=7, seed=0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, classes)) < 0.3).astype(np.float64)
    # Scores loosely tied to the targets, so AP and AUC are neither trivial nor 0.5.
    scores = rng.random((n, classes)) + 0.5 * targets
    return scores, targets


def test_agrees_with_scikit_learn_on_random_data():
    scores, targets = random_multilabel()
    metrics = evaluate_scores(scores, targets)
    ap = [average_precision_score(targets[:, k], scores[:, k]) for k in range(7)]
    auc = [roc_auc_score(targets[:, k], scores[:, k]) for k in range(7)]
    np.testing.assert_allclose(metrics.per_class_ap, ap, rtol=0, atol=1e-9)
    np.testing.assert_allclose(metrics.per_class_auc, auc, rtol=0, atol=1e-9)
    assert metrics.mAP == pytest.approx(np.mean(ap), abs=1e-9)
    assert metrics.mean_auc == pytest.approx(np.mean(auc), abs=1e-9)
    # scikit-learn's own macro averages over the whole matrix say the same.
    assert metrics.mAP == pytest.approx(average_precision_score(targets, scores), abs=1e-9)
    assert metrics.mean_auc == pytest.approx(roc_auc_score(targets, scores), abs=1e-9)
    assert metrics.n_examples == 200
    assert metrics.excluded == ()


def test_d_prime_is_the_formula_of_the_paper():
    scores, targets = random_multilabel(seed=1)
    metrics = evaluate_scores(scores, targets)
    expected = math.sqrt(2) * NormalDist().inv_cdf(metrics.mean_auc)
    assert metrics.d_prime == pytest.approx(expected, abs=1e-12)
    assert d_prime(0.5) == 0.0
    assert d_prime(0.9) == pytest.approx(1.812387605, abs=1e-9)  # sqrt(2) * 1.2815515655
    assert d_prime(1.0) == math.inf
    assert math.isnan(d_prime(math.nan))


def test_classes_without_positives_or_negatives_are_reported_and_excluded():
    scores, targets = random_multilabel(n=50, classes=5, seed=2)
    targets[:, 1] = 0  # no positive example
    targets[:, 3] = 1  # no negative example
    labels = LabelSet.from_names(["a", "b", "c", "d", "e"])
    metrics = evaluate_scores(scores, targets, labels=labels)
    assert [(e.index, e.name, e.reason) for e in metrics.excluded] == [
        (1, "b", "no positive example"),
        (3, "d", "no negative example"),
    ]
    kept = [0, 2, 4]
    ap = [average_precision_score(targets[:, k], scores[:, k]) for k in kept]
    assert metrics.mAP == pytest.approx(np.mean(ap), abs=1e-9)
    assert np.isnan(metrics.per_class_ap[[1, 3]]).all()
    assert np.isnan(metrics.per_class_auc[[1, 3]]).all()


def test_every_class_excluded_gives_undefined_means_not_a_crash():
    metrics = evaluate_scores(np.random.default_rng(0).random((4, 3)), np.zeros((4, 3)))
    assert math.isnan(metrics.mAP) and math.isnan(metrics.mean_auc) and math.isnan(metrics.d_prime)
    assert len(metrics.excluded) == 3
    assert metrics.to_dict()["mAP"] is None


def test_perfect_scores_give_map_one():
    _, targets = random_multilabel(n=40, classes=4, seed=3)
    metrics = evaluate_scores(targets * 0.8 + 0.1, targets)
    assert metrics.mAP == 1.0
    assert metrics.mean_auc == 1.0
    assert metrics.d_prime == math.inf


def test_soft_targets_count_as_positive_from_one_half():
    scores, targets = random_multilabel(n=60, classes=3, seed=4)
    soft = np.where(targets == 1, 0.7, 0.2)
    hard_metrics = evaluate_scores(scores, targets)
    soft_metrics = evaluate_scores(scores, soft)
    np.testing.assert_array_equal(soft_metrics.per_class_ap, hard_metrics.per_class_ap)
    np.testing.assert_array_equal(soft_metrics.per_class_auc, hard_metrics.per_class_auc)


def test_accuracy_is_argmax_agreement():
    targets = np.eye(3)[[0, 1, 2, 2]]
    scores = np.array(
        [
            [0.9, 0.1, 0.0],  # right
            [0.2, 0.7, 0.1],  # right
            [0.5, 0.4, 0.1],  # wrong
            [0.1, 0.1, 0.8],  # right
        ]
    )
    assert accuracy(scores, targets) == 0.75
    assert evaluate_scores(scores, targets).accuracy == 0.75
    # Multi-label rows: argmax of the targets is their first positive class (official code).
    assert accuracy(np.array([[0.1, 0.2, 0.9]]), np.array([[1.0, 0.0, 1.0]])) == 0.0


def test_to_dict_is_json_ready():
    scores, targets = random_multilabel(n=30, classes=3, seed=5)
    targets[:, 2] = 0
    labels = LabelSet.from_names(["x", "y", "z"])
    data = json.loads(json.dumps(evaluate_scores(scores, targets, labels=labels).to_dict()))
    assert data["n_classes"] == 3 and data["n_classes_scored"] == 2
    assert data["excluded"] == [{"index": 2, "name": "z", "reason": "no positive example"}]
    assert data["per_class"][2] == {"index": 2, "name": "z", "ap": None, "auc": None}
    assert data["per_class"][0]["name"] == "x"
    assert "per_class" not in evaluate_scores(scores, targets).to_dict(per_class=False)


@pytest.mark.parametrize(
    ("scores", "targets", "message"),
    [
        (
            np.zeros(5),
            np.zeros(5),
            r"scores must be 2-D \[n_examples, n_classes\], got shape \(5,\)",
        ),
        (np.zeros((4, 3)), np.zeros((4, 2)), r"same shape, got \(4, 3\) and \(4, 2\)"),
        (np.zeros((0, 3)), np.zeros((0, 3)), "at least one example"),
        (np.full((2, 2), np.nan), np.zeros((2, 2)), "scores contain NaN"),
        (np.zeros((2, 2)), np.full((2, 2), 2.0), r"targets must lie in \[0, 1\]"),
    ],
)
def test_bad_inputs_are_refused_clearly(scores, targets, message):
    with pytest.raises(ValueError, match=message):
        evaluate_scores(scores, targets)


def test_label_set_must_match_the_number_of_classes():
    with pytest.raises(ValueError, match="label set has 2 classes but scores have 3 columns"):
        evaluate_scores(np.zeros((2, 3)), np.eye(3)[[0, 1]], labels=LabelSet.from_names(["a", "b"]))
