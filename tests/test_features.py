import numpy as np
import pytest
import torch

from asttag import audio
from asttag.features import (
    AUDIOSET_STATS,
    FeatureConfig,
    clip_features,
    fbank,
    normalize,
    pad_or_crop,
    spec_augment,
    window_features,
)


def noise(seconds: float, rate: int = 16000, seed: int = 0, dc: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(int(seconds * rate), generator=g) + dc


def test_frame_count_follows_kaldi():
    config = FeatureConfig()
    assert config.num_frames(160000) == 998  # 10 s -> 998 frames
    assert config.num_frames(399) == 0 and config.num_frames(400) == 1
    assert fbank(noise(10), config).shape == (998, 128)
    assert fbank(torch.zeros(100), config).shape == (0, 128)


def test_matches_transformers_feature_extractor():
    from transformers import ASTFeatureExtractor

    wave = noise(3)
    expected = ASTFeatureExtractor()(wave.numpy(), sampling_rate=16000, return_tensors="pt")
    ours = clip_features(wave, 16000, FeatureConfig())
    assert ours.shape == (1024, 128)
    torch.testing.assert_close(ours, expected["input_values"][0], atol=1e-4, rtol=0)


def test_matches_the_official_recipe_that_removes_the_waveform_mean():
    # The official code subtracts the clip's mean before the fbank; Kaldi's per-frame DC removal
    # makes that a no-op up to rounding, which asttag relies on.
    from torchaudio.compliance import kaldi

    wave = noise(2, dc=0.3)
    official = kaldi.fbank((wave - wave.mean())[None], htk_compat=True, sample_frequency=16000,
                           use_energy=False, window_type="hanning", num_mel_bins=128, dither=0.0,
                           frame_shift=10)
    config = FeatureConfig()
    torch.testing.assert_close(normalize(fbank(wave, config), config), normalize(official, config),
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("mel_bins", [64, 128])
def test_equals_torchaudios_kaldi_fbank_on_loud_quiet_and_silent_frames(mel_bins):
    """asttag computes the fbank itself (faster) and must give torchaudio's numbers: quiet
    low-frequency frames, where pre-emphasis cancels most of the signal, are the hard case."""
    from torchaudio.compliance import kaldi

    t = torch.arange(3 * 16000) / 16000
    wave = torch.cat([noise(1), 1e-3 * torch.sin(2 * torch.pi * 50 * t[:16000]),
                      torch.zeros(8000), 0.5 * torch.sin(2 * torch.pi * 3000 * t[:16000])])
    config = FeatureConfig(num_mel_bins=mel_bins)
    official = kaldi.fbank(wave[None], htk_compat=True, sample_frequency=16000, use_energy=False,
                           window_type="hanning", num_mel_bins=mel_bins, dither=0.0)
    torch.testing.assert_close(fbank(wave, config), official, atol=1e-5, rtol=0)


def test_other_sample_rates_are_resampled_first():
    import torchaudio.functional as F

    wave44 = noise(2, rate=44100)
    config = FeatureConfig()
    expected = clip_features(F.resample(wave44, 44100, 16000), 16000, config)
    torch.testing.assert_close(clip_features(wave44, 44100, config), expected)


def test_channels_are_mixed_to_mono():
    left, right = noise(1, seed=1), noise(1, seed=2)
    config = FeatureConfig(target_length=100)
    stereo = clip_features(torch.stack([left, right]), 16000, config)
    torch.testing.assert_close(stereo, clip_features((left + right) / 2, 16000, config))


def test_pad_happens_before_normalisation():
    config = FeatureConfig(target_length=200)
    out = clip_features(noise(1), 16000, config)  # 98 real frames
    pad_value = (0 - AUDIOSET_STATS[0]) / (2 * AUDIOSET_STATS[1])
    assert torch.allclose(out[98:], torch.full_like(out[98:], pad_value))
    assert pad_or_crop(torch.ones(300, 4), 200).shape == (200, 4)


def test_normalisation_uses_the_models_stats():
    config = FeatureConfig(mean=-6.0, std=5.0)
    torch.testing.assert_close(normalize(torch.tensor([4.0]), config), torch.tensor([1.0]))
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
    cut = window_features(frames, [start_frame], [config.num_frames(piece.numel())], config)[0]
    alone = clip_features(piece, 16000, config)
    assert torch.equal(cut, alone)


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
    assert wave.dim() == 1 and abs(wave.numel() - 8000) <= 1


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
