"""ClipDataset, the feature cache and batched prediction over Example lists."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from asttag import audio, inference
from asttag.audio import AudioError
from asttag.datasets import Example
from asttag.features import FeatureConfig, clip_features
from asttag.inference import (
    ClipDataset,
    example_logits,
    predict_examples,
    target_matrix,
)
from asttag.labels import LabelSet
from asttag.model import AST
from conftest import tiny_config, write_tone

FEATURES = FeatureConfig(num_mel_bins=32, target_length=64)


def _examples(tmp_path, n=5):
    # Different rates, lengths and channel counts: each must come out like clip_features.
    return [
        Example(write_tone(tmp_path / f"{i}.wav", seconds=0.3 + 0.2 * i, rate=(16000, 22050, 44100)[i % 3],
                           freq=300.0 * (i + 1), channels=1 + i % 2, seed=i), (i % 3,))
        for i in range(n)
    ]


def _model(*, multi_label: bool, seed: int = 0) -> AST:
    torch.manual_seed(seed)
    labels = LabelSet.from_names(["a", "b", "c"], multi_label=multi_label)
    return AST(tiny_config(num_classes=3), features=FEATURES, labels=labels).eval()


def test_dataset_gives_the_features_a_clip_gets_on_its_own(tmp_path):
    examples = _examples(tmp_path)
    dataset = ClipDataset(examples, FEATURES)
    assert len(dataset) == len(examples)
    import soundfile as sf

    for i, example in enumerate(examples):
        data, rate = sf.read(str(example.path), dtype="float32", always_2d=True)
        expected = clip_features(data.T, rate, FEATURES)
        assert dataset[i].shape == (64, 32)
        np.testing.assert_allclose(dataset[i].numpy(), expected, rtol=0, atol=1e-5)


def test_cache_returns_the_same_features_without_decoding_again(tmp_path, monkeypatch):
    examples = _examples(tmp_path, n=3)
    plain = [ClipDataset(examples, FEATURES)[i] for i in range(3)]
    cached = ClipDataset(examples, FEATURES, cache=tmp_path / "cache")
    first = [cached[i] for i in range(3)]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(inference, "load_audio", no_decoding)
    again = [ClipDataset(examples, FEATURES, cache=tmp_path / "cache")[i] for i in range(3)]
    for a, b, c in zip(plain, first, again):
        assert torch.equal(a, b) and torch.equal(b, c)
    # Other mel settings are other entries, not stale hits.
    with pytest.raises(AssertionError, match="decoded although cached"):
        ClipDataset(examples, FeatureConfig(num_mel_bins=16, target_length=64), cache=tmp_path / "cache").log_mel(0)


def test_cache_misses_when_the_file_changes(tmp_path):
    path = write_tone(tmp_path / "x.wav", freq=300.0)
    dataset = ClipDataset([Example(path, (0,))], FEATURES, cache=tmp_path / "cache")
    before = dataset[0]
    write_tone(path, freq=3000.0)
    os.utime(path, ns=(1, 1))  # a different modification time, whatever the clock's resolution
    assert not torch.equal(dataset[0], before)


def test_target_matrix_holds_multi_hot_labels_and_soft_scores(tmp_path):
    path = write_tone(tmp_path / "x.wav")
    examples = [Example(path, (0, 2)), Example(path, soft=np.array([0.2, 0.3, 0.5])), Example(path, ())]
    expected = np.array([[1, 0, 1], [0.2, 0.3, 0.5], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(target_matrix(examples, 3), expected)
    assert target_matrix([], 3).shape == (0, 3)


@pytest.mark.parametrize("multi_label", [False, True])
def test_predict_examples_keeps_the_order_whatever_the_batching(tmp_path, multi_label):
    examples = _examples(tmp_path)
    model = _model(multi_label=multi_label)
    one = predict_examples(model, examples, batch_size=1)
    many = predict_examples(model, examples, batch_size=4, cache=tmp_path / "cache")
    assert one.shape == (5, 3) and one.dtype == np.float32
    np.testing.assert_allclose(one, many, atol=1e-6)
    logits = torch.from_numpy(example_logits(model, examples, batch_size=2))
    expected = logits.sigmoid() if multi_label else logits.softmax(-1)
    np.testing.assert_allclose(one, expected.numpy(), atol=1e-6)
    # Each row is that clip's own prediction, computed alone.
    alone = model.predict(ClipDataset(examples[3:4], FEATURES)[0][None])[0]
    np.testing.assert_allclose(one[3], alone.detach().numpy(), atol=1e-6)


def test_predict_examples_with_decoding_workers(tmp_path):
    examples = _examples(tmp_path, n=4)
    model = _model(multi_label=False)
    np.testing.assert_allclose(predict_examples(model, examples, batch_size=3, workers=2),
                               predict_examples(model, examples, batch_size=3), atol=1e-6)


def test_predict_examples_takes_anything_with_the_prediction_interface(tmp_path):
    examples = _examples(tmp_path, n=2)
    model = _model(multi_label=True)

    class Halved(torch.nn.Module):  # an ensemble-like model: predict, features, labels only
        def __init__(self):
            super().__init__()
            self.inner, self.features, self.labels = model, model.features, model.labels

        def predict(self, x):
            return self.inner.predict(x) / 2

    np.testing.assert_allclose(predict_examples(Halved(), examples),
                               predict_examples(model, examples) / 2, atol=1e-7)


def test_bf16_on_the_cpu_stays_close_to_fp32(tmp_path):
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("no native bf16 on this CPU")
    examples = _examples(tmp_path, n=2)
    model = _model(multi_label=True)
    np.testing.assert_allclose(predict_examples(model, examples, precision="bf16"),
                               predict_examples(model, examples), atol=0.05)


def test_an_undecodable_clip_is_named(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="bad.wav"):
        predict_examples(_model(multi_label=True), [Example(bad, (0,))])


def test_batch_size_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        predict_examples(_model(multi_label=True), _examples(tmp_path, n=1), batch_size=0)


def test_waveform_access_resamples_to_the_feature_rate(tmp_path):
    path = write_tone(tmp_path / "x.wav", seconds=0.5, rate=44100)
    wave = ClipDataset([Example(path, (0,))], FEATURES).wave(0)
    assert isinstance(wave, torch.Tensor)
    assert wave.shape == audio.load(path, sample_rate=16000).shape == (8000,)
