"""Kaldi-compatible log-mel filter banks as the published AST models expect them.

The features are the official ones: torchaudio's Kaldi compliance fbank with the AST recipe's
settings (Hann window, 25 ms frames every 10 ms, no dither, HTK-compatible, no energy), with its
mel filters. `fbank` computes the same steps as `torchaudio.compliance.kaldi.fbank` for these
settings, equal to it within 1e-5 in log-mel (tested), at about twice its speed: the window and
the filters are built once per setting, not per call, and the power spectrum is re^2 + im^2
rather than the magnitude's square root squared; the frame log-energy Kaldi computes and these
settings discard is not computed at all (README, Performance).

Frames are cut from a recording on a fixed grid, so the fbank of a long block computed once and
sliced in the frame domain equals the fbank of each window computed on its own whenever the
window starts on that grid: `window_features` relies on it. The equality is to the bit for
calls of a dozen frames or more; below that torch's small-matrix kernels round differently (by
~1e-7), which is why the tagger never computes fewer than 32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache

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


# Kaldi's settings that the AST recipe leaves at their defaults.
PREEMPHASIS = 0.97
LOW_FREQ = 20.0  # Hz; the high end is the Nyquist frequency
_LOG_FLOOR = torch.finfo(torch.float32).eps


def fbank(wave: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Log-mel frames (frames, mel bins) of a mono waveform at config.sample_rate.

    Works on any device; a waveform shorter than one frame gives zero frames.
    """
    if wave.dim() != 1:
        raise ValueError(f"fbank expects a mono waveform (samples,), got shape {tuple(wave.shape)}")
    count = config.num_frames(wave.numel())
    if count == 0:
        return wave.new_zeros(0, config.num_mel_bins, dtype=torch.float32)
    window, filters = (t.to(wave.device) for t in _tables(config))
    size = config.frame_length_samples
    # No removal of the clip's mean (the official recipe does it, transformers does not): each
    # frame's DC offset is removed anyway, so it changes nothing but rounding, and leaving it
    # out keeps a window's frames bit-identical whether cut from a long block or computed alone.
    frames = wave.float().unfold(0, size, config.frame_shift_samples)
    frames = frames - frames.mean(dim=1, keepdim=True)
    padded = frames.new_empty(count, 2 * (filters.shape[0] - 1))
    padded[:, size:] = 0
    # Pre-emphasis, x[j] - 0.97 x[j - 1], the first sample against itself, as Kaldi does.
    # The product rounded before the difference, as Kaldi's code computes it: on quiet frames
    # the difference cancels most of it, and a fused multiply-add moved log-mel by 6e-3.
    torch.sub(frames[:, 1:], PREEMPHASIS * frames[:, :-1], out=padded[:, 1:size])
    padded[:, 0] = frames[:, 0] - PREEMPHASIS * frames[:, 0]
    padded[:, :size] *= window
    spectrum = torch.fft.rfft(padded)
    power = spectrum.real.square() + spectrum.imag.square()
    return (power @ filters).clamp_min_(_LOG_FLOOR).log_()


@cache
def _tables(config: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame window (samples,) and the mel filters (FFT bins, mel bins) of a setting."""
    from torchaudio.compliance import kaldi

    size = config.frame_length_samples
    fft_size = 1 << (size - 1).bit_length()  # Kaldi rounds the frame up to a power of two
    window = torch.hann_window(size, periodic=False)
    filters, _ = kaldi.get_mel_banks(config.num_mel_bins, fft_size, float(config.sample_rate),
                                     LOW_FREQ, 0.0, 100.0, -500.0, 1.0)
    # Kaldi's filters stop below the Nyquist bin, which rfft also returns: a zero row for it.
    filters = torch.cat([filters, filters.new_zeros(filters.shape[0], 1)], dim=1)
    return window, filters.T.contiguous()


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
