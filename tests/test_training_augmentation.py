"""Mixup, SpecAugment and noise augmentation of training examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asttag.datasets import Example
from asttag.features import FeatureConfig, normalize
from asttag.inference import ClipDataset
from asttag.recipes import Recipe
from asttag.training import SampleKey, TrainingSet, add_noise, augment, mix_waves
from training_fixtures import write_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    kinds = ["low_tone", "high_tone", "noise_burst", "chirp"]
    examples = [Example(write_clip(folder / f"{k}.wav", k, seed=i, seconds=0.5 + 0.25 * i), (i,))
                for i, k in enumerate(kinds)]
    return ClipDataset(examples, FeatureConfig(num_mel_bins=32, target_length=64), cache=folder / "cache")


def test_mix_waves_cuts_or_pads_the_partner():
    a, b = torch.ones(5), torch.full((3,), 3.0)
    torch.testing.assert_close(mix_waves(a, b, 0.25), torch.tensor([2.5, 2.5, 2.5, 0.25, 0.25]))
    torch.testing.assert_close(mix_waves(b, a, 0.5), torch.full((3,), 2.0))


def test_mixup_mixes_waveforms_and_targets_with_one_beta_lambda(clips):
    data = TrainingSet(clips, 4, mixup=1.0, seed=7)
    lambdas = []
    for position in range(120):
        key = SampleKey(position % 4, 1, position)
        features, target = data[key]
        rng = np.random.default_rng([7, 1, position])  # the draws the key stands for
        rng.random()
        partner, lam = int(rng.integers(4)), float(rng.beta(10, 10))
        expected = np.zeros(4, dtype=np.float32)
        expected[key.index] += lam
        expected[partner] += 1 - lam
        np.testing.assert_allclose(target.numpy(), expected, rtol=1e-6)
        if position < 4:  # the input is the log-mel of the mixed waveform
            mixed = mix_waves(clips.wave(key.index), clips.wave(partner), lam)
            torch.testing.assert_close(features, clips.log_mel_of(mixed))
            assert torch.equal(data[key][0], features)  # same key, same example
        lambdas.append(lam)
    assert 0.45 < np.mean(lambdas) < 0.55 and 0.08 < np.std(lambdas) < 0.14  # Beta(10, 10)


def test_mixup_probability_is_per_example(clips):
    data = TrainingSet(clips, 4, mixup=0.3, seed=1)
    mixed = [data[SampleKey(0, 2, p)][1].max().item() < 1.0 for p in range(200)]
    # A partner of the same clip leaves a one-hot target: 1/4 of the mixed draws.
    assert 0.3 * 0.75 - 0.09 < np.mean(mixed) < 0.3 * 0.75 + 0.09
    plain = TrainingSet(clips, 4, mixup=0.0, seed=1)[SampleKey(2, 1, 0)]
    assert torch.equal(plain[0], clips.log_mel(2)) and plain[1].tolist() == [0, 0, 1, 0]


def test_spec_augment_masks_before_normalisation():
    features = FeatureConfig(num_mel_bins=32, target_length=64)
    recipe = Recipe(name="t", dataset="esc50", epochs=1, batch_size=1, lr=1.0, freqm=8, timem=10)
    torch.manual_seed(0)
    x = augment(torch.full((16, 64, 32), 5.0), recipe, features)
    masked, kept = normalize(torch.tensor(0.0), features), normalize(torch.tensor(5.0), features)
    assert set(torch.unique(x).tolist()) <= {masked.item(), kept.item()}
    assert (x == masked).any()
    plain = augment(torch.full((2, 64, 32), 5.0), recipe.replace(freqm=0, timem=0), features)
    assert torch.equal(plain, torch.full((2, 64, 32), kept.item()))


def test_noise_augmentation_adds_scaled_noise_then_rolls_each_example():
    torch.manual_seed(0)
    x = torch.arange(50.0)[None, :, None].expand(6, 50, 3).contiguous()
    y = add_noise(x)
    for row_in, row_out in zip(x, y):
        fits = [s for s in range(-10, 10)
                if (0 <= (row_out - row_in.roll(s, 0))).all() and ((row_out - row_in.roll(s, 0)) < 0.1).all()]
        assert len(fits) == 1
