"""Kaldi-compatible log-mel filter banks as the published AST models expect them.

The features are the official ones: torchaudio's Kaldi compliance fbank with the AST recipe's
settings (Hann window, 25 ms frames every 10 ms, no dither, HTK-compatible, no energy), with its
mel filters. `fbank` computes the same steps as `torchaudio.compliance.kaldi.fbank` for these
settings, equal to it up to float32 rounding (the nearer of the two to the same steps in
float64: within 3e-4 in log-mel where torchaudio is 1.5e-3 away; tested), faster: the window and
the filters are built once per setting, not per call, and the power spectrum is re^2 + im^2
rather than the magnitude's square root squared; the frame log-energy Kaldi computes and these
settings discard is not computed at all (README, Performance). It is numpy, not torch, so that
tagging on the CPU can run without importing torch (1.8 s of start-up): the features are
numpy arrays in, numpy arrays out; the training code turns them into tensors.

Frames are cut from a recording on a fixed grid, so the fbank of a long block computed once and
sliced in the frame domain equals the fbank of each window computed on its own whenever the
window starts on that grid: `window_features` relies on it. The equality is to the bit (tested):
frames are computed in groups of a fixed shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from .audio import resample, to_mono

if TYPE_CHECKING:
    import torch

# What the shape helpers take and give back: a numpy array or a torch tensor alike.
ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")

__all__ = [
    "FeatureConfig",
    "AUDIOSET_STATS",
    "ESC50_STATS",
    "SPEECH_COMMANDS_STATS",
    "fbank",
    "BlockFbank",
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
PREEMPHASIS = np.float32(0.97)
LOW_FREQ = 20.0  # Hz; the high end is the Nyquist frequency
_LOG_FLOOR = np.finfo(np.float32).eps


# Frames computed at a time, always this many (the last group padded with silence): a fixed
# shape keeps each frame's value independent of where a call starts or ends (small-matrix
# kernels round differently at other shapes), and a group's buffers stay in the cache instead
# of the fresh pages large arrays take (10 minutes of audio: 0.19 s against 0.75 s in one go).
_GROUP = 32


def fbank(wave: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log-mel frames (frames, mel bins) float32 of a mono waveform at config.sample_rate.

    A waveform shorter than one frame gives zero frames.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"fbank expects a mono waveform (samples,), got shape {wave.shape}")
    count = config.num_frames(wave.size)
    out = np.empty((count, config.num_mel_bins), dtype=np.float32)
    if count == 0:
        return out
    window, filters = _tables(config)
    size = config.frame_length_samples
    frames = np.lib.stride_tricks.sliding_window_view(wave, size)[:: config.frame_shift_samples][:count]
    group = np.zeros((_GROUP, size), dtype=np.float32)
    padded = np.zeros((_GROUP, 2 * (filters.shape[0] - 1)), dtype=np.float32)
    for first in range(0, count, _GROUP):
        n = min(_GROUP, count - first)
        group[:n] = frames[first : first + n]
        group[n:] = 0
        out[first : first + n] = _log_mel(group, padded, window, filters)[:n]
    return out


class BlockFbank:
    """The fbank of a recording fed in consecutive audio blocks, on its one frame grid: each
    block gives the frames it completes, the audio after the last whole frame waits for the
    next block, so the frames equal those of the whole recording at once (bit for bit)."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._carry = np.zeros(0, dtype=np.float32)

    def push(self, block: np.ndarray) -> np.ndarray:
        """The frames (frames, mel bins) completed by `block`; none while one is not whole."""
        audio = np.concatenate([self._carry, block])
        frames = fbank(audio, self.config)
        self._carry = audio[len(frames) * self.config.frame_shift_samples :]
        return frames


def _log_mel(frames: np.ndarray, padded: np.ndarray, window: np.ndarray,
             filters: np.ndarray) -> np.ndarray:
    size = frames.shape[1]
    # No removal of the clip's mean (the official recipe does it, transformers does not): each
    # frame's DC offset is removed anyway, so it changes nothing but rounding, and leaving it
    # out keeps a window's frames bit-identical whether cut from a long block or computed alone.
    frames = frames - frames.mean(axis=1, keepdims=True, dtype=np.float32)
    # Pre-emphasis, x[j] - 0.97 x[j - 1], the first sample against itself, as Kaldi does.
    # The product rounded before the difference, as Kaldi's code computes it: on quiet frames
    # the difference cancels most of it, and a fused multiply-add moved log-mel by 6e-3.
    np.subtract(frames[:, 1:], PREEMPHASIS * frames[:, :-1], out=padded[:, 1:size])
    padded[:, 0] = frames[:, 0] - PREEMPHASIS * frames[:, 0]
    padded[:, :size] *= window
    spectrum = np.fft.rfft(padded)
    power = np.square(spectrum.real) + np.square(spectrum.imag)
    return np.log(np.maximum(power @ filters, _LOG_FLOOR))


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


@cache
def _tables(config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """The frame window (samples,) and Kaldi's triangular mel filters (FFT bins, mel bins) of a
    setting, float32.

    Computed in float64 and rounded once: torchaudio builds them in float32, which puts its
    weights up to 2e-5 from these (tested), a difference well inside the features' own float32
    rounding (see `fbank`).
    """
    size = config.frame_length_samples
    fft_size = 1 << (size - 1).bit_length()  # Kaldi rounds the frame up to a power of two
    window = np.hanning(size).astype(np.float32)  # symmetric, as Kaldi's "hanning"
    bins = config.num_mel_bins
    low, high = _mel(LOW_FREQ), _mel(config.sample_rate / 2)
    edges = low + (high - low) / (bins + 1) * np.arange(bins + 2)  # left, centre, right of each
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    mel = _mel(np.arange(fft_size // 2 + 1) * (config.sample_rate / fft_size))[None, :]
    filters = np.maximum(0.0, np.minimum((mel - left) / (centre - left), (right - mel) / (right - centre)))
    filters[:, -1] = 0.0  # Kaldi's filters stop below the Nyquist bin, which rfft also returns
    return window, np.ascontiguousarray(filters.T, dtype=np.float32)


def pad_or_crop(frames: ArrayT, target_length: int) -> ArrayT:
    """Zero-pad at the end or cut to `target_length` frames (padding is done before norm);
    a numpy array or a torch tensor, (..., frames, mel bins)."""
    n = frames.shape[-2]
    if n >= target_length:
        return frames[..., :target_length, :]
    if isinstance(frames, np.ndarray):
        return np.pad(frames, [(0, 0)] * (frames.ndim - 2) + [(0, target_length - n), (0, 0)])
    import torch

    pad = frames.new_zeros(*frames.shape[:-2], target_length - n, frames.shape[-1])
    return torch.cat([frames, pad], dim=-2)


def normalize(frames: ArrayT, config: FeatureConfig) -> ArrayT:
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


def clip_features(wave: np.ndarray, sample_rate: int, config: FeatureConfig) -> np.ndarray:
    """Model input (target_length, mel bins) float32 of one clip, at any rate and channel count.

    `wave` is (samples,) or (channels, samples); it is mixed to mono and resampled first.
    """
    mono = resample(to_mono(wave), sample_rate, config.sample_rate)
    return normalize(pad_or_crop(fbank(mono, config), config.target_length), config)


def window_features(
    block_frames: np.ndarray, starts: list[int], lengths: list[int], config: FeatureConfig,
) -> np.ndarray:
    """Cut windows from the raw fbank of a long block: (windows, target_length, mel bins).

    Window i takes `lengths[i]` frames from frame `starts[i]` (the frames wholly inside that
    window's audio) and is padded and normalised exactly as a clip of that audio would be.
    """
    out = np.zeros((len(starts), config.target_length, block_frames.shape[-1]), dtype=np.float32)
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
