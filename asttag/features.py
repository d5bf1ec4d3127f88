"""Kaldi-compatible log-mel filter banks as the published AST models expect them.

The fbank call is the official one (torchaudio's Kaldi compliance module, Hann window, 25 ms
frames every 10 ms, no dither). Frames are cut from a recording on a fixed grid, so the fbank of
a long block computed once and sliced in the frame domain equals the fbank of each window
computed on its own whenever the window starts on that grid: `window_features` relies on it.
The equality is to the bit for calls of a dozen frames or more; below that torch's small-matrix
kernels round differently (by ~1e-7), which is why the tagger never computes fewer than 32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .audio import resample, to_mono

__all__ = [
    "FeatureConfig",
    "AUDIOSET_STATS",
    "ESC50_STATS",
    "SPEECH_COMMANDS_STATS",
    "fbank",
    "pad_or_crop",
    "normalize",
    "convert_input",
    "clip_features",
    "window_features",
    "spec_augment",
]

# (mean, std) of the log-mel features each published model was trained with.
AUDIOSET_STATS = (-4.2677393, 4.5689974)
ESC50_STATS = (-6.6268077, 5.358466)
SPEECH_COMMANDS_STATS = (-6.845978, 5.5654526)


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that turns a waveform into the model's input."""

    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int = 1024
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    mean: float = AUDIOSET_STATS[0]
    std: float = AUDIOSET_STATS[1]

    def __post_init__(self) -> None:
        if not 0 < self.std < float("inf"):  # NaN too: it would turn every score into NaN
            raise ValueError(f"normalisation std must be positive, got {self.std}")
        if self.frame_shift_samples * 1000 != self.frame_shift_ms * self.sample_rate:
            raise ValueError("the frame shift must be a whole number of samples")

    @property
    def frame_shift_samples(self) -> int:
        return round(self.sample_rate * self.frame_shift_ms / 1000)

    @property
    def frame_length_samples(self) -> int:
        return round(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def window_seconds(self) -> float:
        """The span of one model input: target_length frame shifts (10.24 s for 1024 frames)."""
        return self.target_length * self.frame_shift_ms / 1000

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi cuts from `num_samples` samples (snip_edges): 1 + (n - 400) // 160."""
        if num_samples < self.frame_length_samples:
            return 0
        return 1 + (num_samples - self.frame_length_samples) // self.frame_shift_samples

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown feature settings: {', '.join(sorted(unknown))}")
        return cls(**data)


def fbank(wave: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Log-mel frames (frames, mel bins) of a mono waveform at config.sample_rate.

    Works on any device; a waveform shorter than one frame gives zero frames.
    """
    from torchaudio.compliance import kaldi

    if wave.dim() != 1:
        raise ValueError(f"fbank expects a mono waveform (samples,), got shape {tuple(wave.shape)}")
    if config.num_frames(wave.numel()) == 0:
        return wave.new_zeros(0, config.num_mel_bins)
    # No removal of the clip's mean (the official recipe does it, transformers does not): Kaldi
    # removes each frame's DC offset anyway, so it changes nothing but rounding, and leaving it
    # out keeps a window's frames bit-identical whether cut from a long block or computed alone.
    return kaldi.fbank(
        wave.float().unsqueeze(0),
        htk_compat=True,
        sample_frequency=config.sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=config.num_mel_bins,
        dither=0.0,
        frame_length=config.frame_length_ms,
        frame_shift=config.frame_shift_ms,
    )


def pad_or_crop(frames: torch.Tensor, target_length: int) -> torch.Tensor:
    """Zero-pad at the end or cut to `target_length` frames (padding is done before norm)."""
    n = frames.shape[-2]
    if n >= target_length:
        return frames[..., :target_length, :]
    pad = frames.new_zeros(*frames.shape[:-2], target_length - n, frames.shape[-1])
    return torch.cat([frames, pad], dim=-2)


def normalize(frames: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """(fbank - mean) / (2 * std), the published models' normalisation."""
    return (frames - config.mean) / (2 * config.std)


def convert_input(
    fbank: torch.Tensor, source: FeatureConfig, target: FeatureConfig
) -> torch.Tensor:
    """Input normalised for `source` (B, T, F) re-expressed as the input `target` expects.

    Un-normalise, pad or crop to the target length (zero log-mel padding, as a clip would get)
    and normalise with the target's statistics. Identical settings pass the tensor through
    untouched, so members that share the ensemble's input see exactly what a lone model would.
    """
    if all(getattr(source, k) == getattr(target, k) for k in ("mean", "std", "target_length")):
        return fbank
    raw = fbank * (2 * source.std) + source.mean
    return normalize(pad_or_crop(raw, target.target_length), target)


def clip_features(wave: torch.Tensor, sample_rate: int, config: FeatureConfig) -> torch.Tensor:
    """Model input (target_length, mel bins) of one clip, at any rate and channel count.

    `wave` is (samples,) or (channels, samples); it is mixed to mono and resampled first.
    """
    mono = resample(to_mono(wave), sample_rate, config.sample_rate)
    return normalize(pad_or_crop(fbank(mono, config), config.target_length), config)


def window_features(
    block_frames: torch.Tensor, starts: list[int] | torch.Tensor, lengths: list[int] | torch.Tensor,
    config: FeatureConfig,
) -> torch.Tensor:
    """Cut windows from the raw fbank of a long block: (windows, target_length, mel bins).

    Window i takes `lengths[i]` frames from frame `starts[i]` (the frames wholly inside that
    window's audio) and is padded and normalised exactly as a clip of that audio would be.
    """
    out = block_frames.new_zeros(len(starts), config.target_length, block_frames.shape[-1])
    for i, (start, length) in enumerate(zip(starts, lengths)):
        length = min(int(length), config.target_length, block_frames.shape[0] - int(start))
        if length > 0:
            out[i, :length] = block_frames[int(start) : int(start) + length]
    return normalize(out, config)


def spec_augment(frames: torch.Tensor, *, freq_mask: int, time_mask: int) -> torch.Tensor:
    """SpecAugment as the AST recipes use it: one frequency and one time mask per example.

    `frames` is (batch, time, mel) raw log-mel: masking happens before normalisation, so masked
    cells read as 0 in log-mel, as in the official recipe. Draws from torch's global generator.
    """
    import torchaudio.functional as F

    if frames.dim() != 3:
        raise ValueError(f"spec_augment expects (batch, time, mel), got shape {tuple(frames.shape)}")
    if freq_mask > 0:
        frames = F.mask_along_axis_iid(frames, min(freq_mask, frames.shape[2]), 0.0, axis=2)
    if time_mask > 0:
        frames = F.mask_along_axis_iid(frames, min(time_mask, frames.shape[1]), 0.0, axis=1)
    return frames
