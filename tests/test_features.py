import itertools

import numpy as np
import pytest
import torch

from asttag import audio
from asttag.features import (
    AUDIOSET_STATS,
    FeatureConfig,
    _tables,
    clip_features,
    fbank,
    normalize,
    pad_or_crop,
    spec_augment,
    window_features,
)


def noise(seconds: float, rate: int = 16000, seed: int = 0, dc: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * rate)) + dc).astype(np.float32)


def kaldi_fbank(wave: np.ndarray, mel_bins: int = 128) -> np.ndarray:
    """torchaudio's Kaldi fbank with the AST recipe's settings, in the wave's precision."""
    from torchaudio.compliance import kaldi

    return kaldi.fbank(torch.from_numpy(wave)[None], htk_compat=True, sample_frequency=16000,
                       use_energy=False, window_type="hanning", num_mel_bins=mel_bins,
                       dither=0.0, frame_shift=10).numpy()


def test_frame_count_follows_kaldi():
    config = FeatureConfig()
    assert config.num_frames(160000) == 998  # 10 s -> 998 frames
    assert config.num_frames(399) == 0 and config.num_frames(400) == 1
    assert fbank(noise(10), config).shape == (998, 128)
    assert fbank(np.zeros(100, np.float32), config).shape == (0, 128)
    assert fbank(noise(1), config).dtype == np.float32


def test_matches_transformers_feature_extractor():
    from transformers import ASTFeatureExtractor

    wave = noise(3)
    expected = ASTFeatureExtractor()(wave, sampling_rate=16000, return_tensors="np")
    ours = clip_features(wave, 16000, FeatureConfig())
    assert ours.shape == (1024, 128)
    np.testing.assert_allclose(ours, expected["input_values"][0], atol=2e-4, rtol=0)


def test_matches_the_official_recipe_that_removes_the_waveform_mean():
    # The official code subtracts the clip's mean before the fbank; Kaldi's per-frame DC removal
    # makes that a no-op up to rounding, which asttag relies on.
    wave = noise(2, dc=0.3)
    config = FeatureConfig()
    official = kaldi_fbank(wave - wave.mean())
    np.testing.assert_allclose(normalize(fbank(wave, config), config), normalize(official, config),
                               atol=1e-4, rtol=0)


def loud_quiet_and_silent() -> np.ndarray:
    t = np.arange(16000) / 16000
    return np.concatenate([noise(1), 1e-3 * np.sin(2 * np.pi * 50 * t), np.zeros(8000),
                           0.5 * np.sin(2 * np.pi * 3000 * t)]).astype(np.float32)


@pytest.mark.parametrize("mel_bins", [64, 128])
def test_is_torchaudios_kaldi_fbank_computed_closer_to_exact(mel_bins):
    """asttag computes the fbank itself (numpy, faster, no torch) and must give torchaudio's
    numbers up to float32 rounding. Where the rounding shows (a loud tone's weak bins, quiet
    low-frequency frames that pre-emphasis cancels), asttag is the nearer of the two to the same
    steps computed in float64: within 3e-4, where torchaudio's float32 fbank is 1.5e-3 away."""
    wave = loud_quiet_and_silent()
    ours = fbank(wave, FeatureConfig(num_mel_bins=mel_bins))
    official, exact = kaldi_fbank(wave, mel_bins), kaldi_fbank(wave.astype(np.float64), mel_bins)
    assert np.abs(ours - exact).max() <= 3e-4 < np.abs(official - exact).max()
    assert np.abs(ours - official).max() <= 2e-3
    assert np.median(np.abs(ours - official)) <= 1e-6


@pytest.mark.parametrize("mel_bins", [64, 128])
def test_mel_filters_are_kaldis(mel_bins):
    from torchaudio.compliance import kaldi

    _, filters = _tables(FeatureConfig(num_mel_bins=mel_bins))
    official, _ = kaldi.get_mel_banks(mel_bins, 512, 16000.0, 20.0, 0.0, 100.0, -500.0, 1.0)
    assert filters.shape == (257, mel_bins) and not filters[-1].any()  # the Nyquist bin: none
    np.testing.assert_allclose(filters[:-1].T, official.numpy(), atol=2e-5, rtol=0)


def test_other_sample_rates_are_resampled_first():
    wave44 = noise(2, rate=44100)
    config = FeatureConfig()
    expected = clip_features(audio.resample(wave44, 44100, 16000), 16000, config)
    np.testing.assert_array_equal(clip_features(wave44, 44100, config), expected)


def test_channels_are_mixed_to_mono():
    left, right = noise(1, seed=1), noise(1, seed=2)
    config = FeatureConfig(target_length=100)
    stereo = clip_features(np.stack([left, right]), 16000, config)
    np.testing.assert_allclose(stereo, clip_features((left + right) / 2, 16000, config), atol=1e-6)


def test_pad_happens_before_normalisation():
    config = FeatureConfig(target_length=200)
    out = clip_features(noise(1), 16000, config)  # 98 real frames
    pad_value = (0 - AUDIOSET_STATS[0]) / (2 * AUDIOSET_STATS[1])
    np.testing.assert_allclose(out[98:], pad_value, rtol=1e-6)
    assert pad_or_crop(np.ones((300, 4)), 200).shape == (200, 4)
    padded = pad_or_crop(torch.ones(2, 50, 4), 80)  # tensors too, as training passes them
    assert isinstance(padded, torch.Tensor) and padded.shape == (2, 80, 4)
    assert torch.equal(padded[:, 50:], torch.zeros(2, 30, 4))


def test_normalisation_uses_the_models_stats():
    config = FeatureConfig(mean=-6.0, std=5.0)
    np.testing.assert_allclose(normalize(np.array([4.0]), config), [1.0])
    with pytest.raises(ValueError, match="std must be positive"):
        FeatureConfig(std=0.0)


@pytest.mark.parametrize("start_frame", [0, 1, 137, 700])
def test_windows_cut_from_a_block_equal_windows_computed_alone(start_frame):
    config = FeatureConfig(target_length=300)
    block = noise(10, seed=3)
    frames = fbank(block, config)
    window = config.target_length * config.frame_shift_samples
    start = start_frame * config.frame_shift_samples
    piece = block[start : start + window]
    cut = window_features(frames, [start_frame], [config.num_frames(piece.size)], config)[0]
    alone = clip_features(piece, 16000, config)
    assert np.array_equal(cut, alone)


def test_features_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from asttag.features import FeatureConfig, fbank; "
            "fbank(np.ones(16000, np.float32), FeatureConfig()); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spec_augment_masks_one_band_and_one_span_per_example():
    torch.manual_seed(0)
    frames = torch.ones(8, 100, 64)
    out = spec_augment(frames, freq_mask=20, time_mask=30)
    for example in out:
        zero_cols = (example == 0).all(dim=0).sum().item()
        zero_rows = (example == 0).all(dim=1).sum().item()
        assert zero_cols < 20 and zero_rows < 30
    assert (out == 0).any()
    assert torch.equal(spec_augment(frames, freq_mask=0, time_mask=0), frames)


def test_audio_load_reads_any_rate_and_channels(tone):
    path = tone("stereo.wav", rate=44100, channels=2, seconds=0.5)
    wave = audio.load(path, sample_rate=16000)
    assert wave.ndim == 1 and abs(wave.size - 8000) <= 1


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file"), (b"not audio at all" * 10, "cannot decode audio")],
)
def test_bad_audio_files_are_named_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(audio.AudioError, match=reason) as info:
        audio.load(path)
    assert str(path) in str(info.value)


def test_nan_audio_is_refused(tmp_path):
    import soundfile as sf

    path = tmp_path / "nan.wav"
    data = np.zeros(1600, dtype=np.float32)
    data[10] = np.nan
    sf.write(str(path), data, 16000, subtype="FLOAT")
    with pytest.raises(audio.AudioError, match="NaN"):
        audio.load(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(audio.AudioError, match="no such file"):
        audio.info(tmp_path / "nope.wav")


def test_block_fbank_gives_the_whole_recordings_frames_whatever_the_blocks():
    from asttag.features import BlockFbank

    config = FeatureConfig()
    wave = noise(3, seed=5)
    stream = BlockFbank(config)
    cuts = [0, 1, 150, 399, 5000, 5161, 30000, wave.size]
    parts = [stream.push(wave[a:b]) for a, b in itertools.pairwise(cuts)]
    assert len(parts[0]) == 0 and len(parts[1]) == 0  # no frame is whole yet
    assert np.array_equal(np.concatenate(parts), fbank(wave, config))
