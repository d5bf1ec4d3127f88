"""Evaluation plumbing: split choice, targets in model order, predictions files, model runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asttag.datasets import DatasetSplits, Example
from asttag.ensemble import Ensemble
from asttag.evaluation import (
    EvaluationError,
    Predictions,
    choose_split,
    load_predictions,
    model_identity,
    model_targets,
    predict_split,
    save_predictions,
)
from asttag.features import clip_features
from asttag.labels import LabelSet
from asttag.metrics import evaluate_scores
from asttag.model import AST
from conftest import tiny_config, write_tone

MODEL_LABELS = LabelSet(("Dog", "Cat", "Bird", "Car"), ("/m/dog", "/m/cat", "/m/bird", "/m/car"))


def examples(*labels: tuple[int, ...]) -> list[Example]:
    return [Example(f"clip{i}.wav", lab) for i, lab in enumerate(labels)]


def test_the_default_split_is_the_first_present_of_test_valid_train():
    labels = LabelSet.generic(2)
    train, held = examples((0,)), examples((1,), (0,))
    assert choose_split(DatasetSplits(labels, train, held, held)) == ("test", held)
    assert choose_split(DatasetSplits(labels, train, held)) == ("valid", held)
    assert choose_split(DatasetSplits(labels, train, [])) == ("train", train)
    assert choose_split(DatasetSplits(labels, train, held), "train") == ("train", train)
    with pytest.raises(EvaluationError, match=r"no test examples \(splits present: valid, train\)"):
        choose_split(DatasetSplits(labels, train, held), "test")


def test_targets_follow_the_models_class_order_by_label_id():
    data_labels = LabelSet(("car", "dog"), ("/m/car", "/m/dog"))  # a subset, in another order
    targets = model_targets(examples((0,), (1,), (0, 1)), data_labels=data_labels,
                            model_labels=MODEL_LABELS)
    np.testing.assert_array_equal(targets, [[0, 0, 0, 1], [1, 0, 0, 0], [1, 0, 0, 1]])


def test_soft_targets_are_kept():
    data_labels = LabelSet(("car", "dog"), ("/m/car", "/m/dog"))
    soft = [Example("a.wav", soft=[0.25, 0.75])]
    targets = model_targets(soft, data_labels=data_labels, model_labels=MODEL_LABELS)
    np.testing.assert_array_equal(targets, [[0.75, 0, 0, 0.25]])


def test_data_classes_unknown_to_the_model_are_refused():
    data_labels = LabelSet(("dog", "horse"), ("/m/dog", "/m/horse"))
    with pytest.raises(EvaluationError, match=r"1 of the data set's 2 classes.*'/m/horse'"):
        model_targets(examples((0,)), data_labels=data_labels, model_labels=MODEL_LABELS)


def saved(tmp_path) -> tuple[Predictions, object]:
    rng = np.random.default_rng(0)
    original = Predictions(
        scores=rng.random((5, 4), dtype=np.float32),
        targets=(rng.random((5, 4)) > 0.5).astype(np.float32),
        labels=LabelSet(("Inside, small room", "b", "c", "d"), ("/m/1", "/m/2", "/m/3", "/m/4"),
                        multi_label=False),
        paths=tuple(f"/data/clip {i}.wav" for i in range(5)),
        model={"source": "model.safetensors", "sha256": "ab" * 32},
    )
    return original, save_predictions(original, tmp_path / "preds.npz")


def test_predictions_round_trip_through_a_file(tmp_path):
    original, path = saved(tmp_path)
    loaded = load_predictions(path)
    np.testing.assert_array_equal(loaded.scores, original.scores)
    np.testing.assert_array_equal(loaded.targets, original.targets)
    assert loaded.scores.dtype == np.float32
    assert (loaded.labels, loaded.paths, loaded.model) == (original.labels, original.paths,
                                                           original.model)
    assert [p.name for p in tmp_path.iterdir()] == ["preds.npz"]  # no temporary file left


def test_other_npz_files_are_refused_by_name(tmp_path):
    np.savez(tmp_path / "other.npz", scores=np.zeros((1, 1)))
    with pytest.raises(EvaluationError, match="other.npz: damaged predictions file"):
        load_predictions(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(EvaluationError, match="text.npz: not a readable predictions file"):
        load_predictions(tmp_path / "text.npz")


def test_metrics_are_those_of_the_saved_scores(tmp_path):
    original, _ = saved(tmp_path)
    expected = evaluate_scores(original.scores, original.targets, labels=original.labels)
    assert original.metrics().to_dict() == expected.to_dict()


def test_model_identity_hashes_files_only(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"abc")
    assert model_identity(str(tmp_path / "m.bin"))["sha256"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert model_identity("audioset-10-10-0.4593") == {"source": "audioset-10-10-0.4593",
                                                       "sha256": None}


@pytest.fixture
def tone_examples(tmp_path) -> list[Example]:
    return [
        Example(write_tone(tmp_path / f"t{i}.wav", seconds=0.7, freq=300.0 + 400 * i, seed=i),
                (i % 4,))
        for i in range(6)
    ]


def test_a_model_run_scores_each_clip_as_one_input(tone_examples):
    torch.manual_seed(0)
    model = AST(tiny_config(), labels=MODEL_LABELS).eval()
    got = predict_split(model, tone_examples, data_labels=MODEL_LABELS, identity={"source": "m"},
                        batch_size=4)
    import soundfile as sf

    inputs = []
    for e in tone_examples:
        wave, rate = sf.read(str(e.path), dtype="float32")
        inputs.append(clip_features(wave, rate, model.features))
    with torch.inference_mode():
        expected = model.predict(torch.from_numpy(np.stack(inputs))).numpy()
    np.testing.assert_allclose(got.scores, expected, rtol=1e-5, atol=1e-6)
    assert got.paths == tuple(str(e.path) for e in tone_examples)
    np.testing.assert_array_equal(got.targets.argmax(1), [0, 1, 2, 3, 0, 1])


def test_an_ensemble_of_copies_scores_exactly_like_the_model(tone_examples):
    torch.manual_seed(0)
    model = AST(tiny_config(), labels=MODEL_LABELS).eval()
    run = dict(data_labels=MODEL_LABELS, identity={}, batch_size=4)
    alone = predict_split(model, tone_examples, **run)
    together = predict_split(Ensemble([model, model, model]), tone_examples, **run)
    np.testing.assert_array_equal(together.scores, alone.scores)
    assert json.dumps(together.metrics().to_dict()) == json.dumps(alone.metrics().to_dict())
