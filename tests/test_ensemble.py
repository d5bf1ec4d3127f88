"""Ensembles: input conversion, exactness for copies, Ensemble-M members, bundles, saved scores."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from asttag import checkpoint, loading
from asttag.ensemble import (
    Ensemble,
    EnsembleError,
    is_bundle,
    load_bundle,
    save_bundle,
)
from asttag.evaluation import Predictions, ensemble_predictions
from asttag.features import (
    ESC50_STATS,
    FeatureConfig,
    convert_input,
    fbank,
    normalize,
    pad_or_crop,
)
from asttag.hub import load_model
from asttag.labels import LabelSet
from asttag.model import AST
from conftest import tiny_config, tiny_model

FEATURES = FeatureConfig(num_mel_bins=32, target_length=64)


def model_with(seed: int = 0, *, length: int = 64, stats=None, **config) -> AST:
    """A tiny AST of input `length` frames, with its own normalisation stats if given."""
    torch.manual_seed(seed)
    mean, std = stats or (FEATURES.mean, FEATURES.std)
    features = FeatureConfig(num_mel_bins=32, target_length=length, mean=mean, std=std)
    return AST(tiny_config(target_length=length, **config), features=features).eval()


def ensemble_m() -> Ensemble:
    """The paper's Ensemble-M in miniature: other seeds, strides, sizes, lengths and stats."""
    return Ensemble([
        model_with(0),
        model_with(1, stride=(12, 12)),
        model_with(2, length=48, stats=ESC50_STATS, embed_dim=48, num_heads=3),
    ]).eval()


def normalised_input(batch: int = 3, frames: int = 70) -> torch.Tensor:
    torch.manual_seed(123)
    raw = torch.randn(batch, frames, 32) * 3 - 5
    return normalize(pad_or_crop(raw, FEATURES.target_length), FEATURES)


def test_converting_input_equals_computing_the_members_own_features():
    raw = torch.randn(2, 70, 32) * 3 - 5
    member = FeatureConfig(num_mel_bins=32, target_length=48, mean=ESC50_STATS[0],
                           std=ESC50_STATS[1])
    longer = FeatureConfig(num_mel_bins=32, target_length=80)
    given = normalize(pad_or_crop(raw, 64), FEATURES)
    torch.testing.assert_close(convert_input(given, FEATURES, member),
                               normalize(pad_or_crop(raw, 48), member))
    # A longer member sees the ensemble's input zero-padded in log-mel, as a short clip would be.
    torch.testing.assert_close(convert_input(given, FEATURES, longer),
                               normalize(pad_or_crop(pad_or_crop(raw, 64), 80), longer))
    assert convert_input(given, FEATURES, FEATURES) is given


def test_an_ensemble_of_copies_predicts_exactly_like_the_model():
    model = tiny_model(seed=3)
    x = normalised_input()
    for members in ([model, model], [model, copy.deepcopy(model), model]):
        assert torch.equal(Ensemble(members).eval().predict(x), model.predict(x))


def test_ensemble_m_averages_members_fed_their_own_input():
    ensemble = ensemble_m()
    assert ensemble.features.target_length == 64  # the longest member input
    x = normalised_input()
    expected = torch.stack(
        [m.predict(convert_input(x, ensemble.features, m.features)) for m in ensemble.members]
    ).mean(0)
    torch.testing.assert_close(ensemble.predict(x), expected)
    assert ensemble.predict(x).shape == (3, 4)


def test_single_label_members_average_softmax_outputs():
    labels = LabelSet.generic(4, multi_label=False)
    members = [AST(tiny_config(), labels=labels).eval() for _ in range(2)]
    probabilities = Ensemble(members).predict(normalised_input())
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(3))


@pytest.mark.parametrize(
    ("other", "named"),
    [
        (lambda: AST(tiny_config(), labels=LabelSet.from_names(list("abcd"))),
         "label ids differ at 4 position(s), first at 0: 'class_0' vs 'a'"),
        (lambda: AST(tiny_config(num_classes=5)), "label set: 4 vs 5 classes"),
        (lambda: AST(tiny_config(num_mel_bins=16)), "features num_mel_bins: 32 vs 16"),
        (lambda: AST(tiny_config(), labels=LabelSet.generic(4, multi_label=False)),
         "label set: multi-label vs single-label"),
    ],
    ids=["ids", "count", "mel-bins", "task"],
)
def test_members_that_do_not_fit_are_refused_with_the_difference_named(other, named):
    with pytest.raises(EnsembleError, match="member 1 does not fit member 0") as caught:
        Ensemble([tiny_model(), other()])
    assert named in str(caught.value)


def test_a_bundle_round_trips_and_loads_like_any_model(tmp_path):
    ensemble = ensemble_m()
    ensemble.members[1].extra = {"epoch": 7}
    path = save_bundle(ensemble, tmp_path / "ens.safetensors", extra={"members": ["a", "b", "c"]})
    assert is_bundle(path) and loading.detect_format(path) == "ensemble"
    assert [p.name for p in tmp_path.iterdir()] == ["ens.safetensors"]  # no temporary file left
    x = normalised_input()
    for loaded in (load_bundle(path), loading.load(path), load_model(str(path))):
        assert isinstance(loaded, Ensemble)
        assert torch.equal(loaded.predict(x), ensemble.predict(x))
        assert loaded.features == ensemble.features and loaded.labels == ensemble.labels
        assert loaded.extra == {"members": ["a", "b", "c"]}
        assert loaded.members[1].extra == {"epoch": 7}
        assert loaded.members[1].config.stride == (12, 12)


def test_a_bundle_may_hold_one_module_twice(tmp_path):
    model = tiny_model()
    loaded = load_bundle(save_bundle(Ensemble([model, model]), tmp_path / "twice.safetensors"))
    assert len(loaded.members) == 2
    x = normalised_input()
    assert torch.equal(loaded.predict(x), model.predict(x))


def test_a_bundle_missing_a_tensor_names_the_member_and_key(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_bundle(Ensemble([tiny_model(0), tiny_model(1)]), tmp_path / "ens.safetensors")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != "members.1.head.bias"}  # noqa: SIM118 (no dict)
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(checkpoint.CheckpointError, match=r"member 1.*missing keys: head.bias"):
        load_bundle(path)


def test_a_plain_checkpoint_is_not_a_bundle(tmp_path):
    path = checkpoint.save(tiny_model(), tmp_path / "one.safetensors")
    assert not is_bundle(path)
    assert loading.detect_format(path) == "asttag"


def test_members_that_are_bundles_are_flattened():
    a, b, c = tiny_model(0), tiny_model(1), tiny_model(2)
    assert list(Ensemble([Ensemble([a, b]), c]).members) == [a, b, c]


# --------------------------------------------------------------------------- saved predictions


def predictions(scores, targets, paths, labels=None, name="m") -> Predictions:
    scores, targets = np.asarray(scores, np.float32), np.asarray(targets, np.float32)
    return Predictions(scores, targets, labels or LabelSet.generic(scores.shape[1]), tuple(paths),
                       {"source": name, "sha256": None})


def test_saved_predictions_average_after_lining_up_the_clips():
    a = predictions([[0.2, 0.8], [0.6, 0.4], [0.1, 0.3]], [[0, 1], [1, 0], [0, 1]], "xyz", name="a")
    b = predictions([[0.9, 0.3], [0.0, 1.0], [0.4, 0.6]], [[0, 1], [0, 1], [1, 0]], "zxy", name="b")
    combined = ensemble_predictions([a, b])
    np.testing.assert_allclose(combined.scores, [[0.1, 0.9], [0.5, 0.5], [0.5, 0.3]], rtol=1e-6)
    assert combined.paths == ("x", "y", "z")
    assert combined.model == {"ensemble": [a.model, b.model]}


def test_saved_predictions_of_other_clips_labels_or_targets_are_refused():
    a = predictions([[0.2, 0.8]], [[0, 1]], ["x"])
    with pytest.raises(EnsembleError, match=r"other clips.*missing, e.g. x; .* not in .*, e.g. y"):
        ensemble_predictions([a, predictions([[0.2, 0.8]], [[0, 1]], ["y"])])
    with pytest.raises(EnsembleError, match="other targets"):
        ensemble_predictions([a, predictions([[0.2, 0.8]], [[1, 0]], ["x"])])
    with pytest.raises(EnsembleError, match="label ids differ"):
        ensemble_predictions([a, predictions([[0.2, 0.8]], [[0, 1]], ["x"],
                                             labels=LabelSet.from_names(["p", "q"]))])


# --------------------------------------------------------------------------- trained members


def generated_clips(n: int, *, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Normalised log-mel of noisy tones: class k is a tone near 500 * (k + 1) Hz, 0-2 tones a clip.

    Loud noise and close frequencies keep tiny, briefly trained models well short of perfect.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(10480) / 16000  # 64 frames
    inputs, targets = [], np.zeros((n, 4), np.float32)
    for i in range(n):
        wave = 1.5 * rng.standard_normal(t.size)
        for k in rng.choice(4, size=rng.integers(1, 3), replace=False):
            targets[i, k] = 1
            wave += 0.4 * np.sin(2 * np.pi * (500 * (k + 1) + rng.normal(0, 60)) * t)
        inputs.append(normalize(fbank(wave.astype(np.float32), FEATURES), FEATURES))
    return torch.from_numpy(np.stack(inputs)), targets


def trained(model: AST, x: torch.Tensor, y: np.ndarray, *, steps: int = 30) -> AST:
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    target = torch.from_numpy(y)
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_an_ensemble_of_trained_members_scores_at_least_their_mean():
    train_x, train_y = generated_clips(64, seed=0)
    test_x, test_y = generated_clips(64, seed=1)
    members = [trained(model_with(seed), train_x, train_y) for seed in (0, 1)]
    members.append(trained(model_with(2, stride=(12, 12)), train_x, train_y))
    paths = [f"clip{i}" for i in range(len(test_x))]
    with torch.inference_mode():
        saved = [predictions(m.predict(test_x), test_y, paths) for m in members]
        direct = Ensemble(members).predict(test_x)
    combined = ensemble_predictions(saved)
    np.testing.assert_allclose(combined.scores, direct.numpy(), rtol=1e-6)

    member_maps = [p.metrics().mAP for p in saved]
    ensemble_map = combined.metrics().mAP
    assert 0.3 < min(member_maps) and max(member_maps) < 0.99  # trained, but not perfect
    assert ensemble_map >= np.mean(member_maps)
