"""Audio input: decode with soundfile, mix to mono, resample with torchaudio.

Every failure is an `AudioError` whose message starts with the file's name and says why, so a
caller can report it and go on with the next file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["AudioError", "AudioInfo", "info", "load", "to_mono", "resample", "check_finite"]


class AudioError(Exception):
    """A file that cannot be used as audio: unreadable, corrupt, empty or holding NaN/Inf."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _soundfile_reason(error: Exception) -> str:
    text = str(error).strip()
    # soundfile prefixes its messages with the (possibly long) path: keep only the reason.
    if ": " in text and text.startswith("Error opening"):
        text = text.rsplit(": ", 1)[-1]
    return f"cannot decode audio ({text})" if text else "cannot decode audio"


def info(path: str | Path) -> AudioInfo:
    """Sample rate, channels and length of a file, without decoding it."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        meta = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(path, _soundfile_reason(e)) from None
    except OSError as e:
        raise AudioError(path, f"cannot read file ({e.strerror or e})") from None
    frames = meta.frames
    if frames <= 0 or frames >= 2**62:  # soundfile reports unknown lengths as huge numbers
        raise AudioError(path, "no audio samples (zero length)")
    return AudioInfo(str(path), int(meta.samplerate), int(meta.channels), int(frames))


def check_finite(path: str | Path, samples: np.ndarray) -> None:
    if not np.isfinite(samples).all():
        raise AudioError(path, "audio contains NaN or infinite samples")


def load(path: str | Path, *, sample_rate: int | None = 16000) -> torch.Tensor:
    """The whole file as a mono float32 tensor (samples,), resampled to `sample_rate`.

    For short clips; long recordings go through the tagger's block reader instead.
    """
    import soundfile as sf

    meta = info(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, _soundfile_reason(e)) from None
    if data.shape[0] == 0:
        raise AudioError(path, "no audio samples (zero length)")
    check_finite(path, data)
    wave = to_mono(torch.from_numpy(data.T.copy()))
    return resample(wave, rate, sample_rate or meta.sample_rate)


def to_mono(wave: torch.Tensor) -> torch.Tensor:
    """(channels, samples) or (samples,) -> (samples,), by averaging the channels."""
    if wave.dim() == 1:
        return wave
    if wave.dim() != 2:
        raise ValueError(f"expected (channels, samples) audio, got shape {tuple(wave.shape)}")
    return wave.mean(dim=0) if wave.shape[0] > 1 else wave[0]


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited resampling (torchaudio); a no-op when the rates agree."""
    if orig_rate == new_rate:
        return wave
    import torchaudio.functional as F

    return F.resample(wave, orig_rate, new_rate)
