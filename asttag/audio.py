"""Audio input: decode with soundfile, mix to mono, resample with torchaudio.

Every failure is an `AudioError` whose message starts with the file's name and says why, so a
caller can report it and go on with the next file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "AudioError",
    "AudioInfo",
    "info",
    "load",
    "iter_blocks",
    "to_mono",
    "resample",
    "check_finite",
    "AUDIO_SUFFIXES",
    "find_audio",
]

# File name endings taken when a directory is given: what libsndfile decodes.
AUDIO_SUFFIXES = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .snd .caf .w64 .rf64 .voc".split()
)


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


def check_finite(
    path: str | Path, samples: np.ndarray, *, offset: int = 0, sample_rate: int | None = None
) -> None:
    """Fail on NaN/Inf; with `sample_rate`, say where the first one is (`offset`: samples before)."""
    finite = np.isfinite(samples)
    if finite.all():
        return
    where = ""
    if sample_rate:
        first = int(np.argmin(finite.all(axis=1) if finite.ndim == 2 else finite))
        where = f" (first at {(offset + first) / sample_rate:.3f} s)"
    raise AudioError(path, f"audio contains NaN or infinite samples{where}")


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


def _resample_margin(orig_rate: int, new_rate: int, step: int) -> int:
    """Source samples of context that make block-wise resampling equal whole-file resampling.

    torchaudio's sinc kernel reaches 6 zero crossings (of the lower rate) plus one phase step on
    each side; 64 periods is a wide margin, rounded up to whole phase steps so every block starts
    on a sample both rates share.
    """
    periods = math.ceil(64 * orig_rate / min(orig_rate, new_rate)) + step
    return math.ceil(periods / step) * step


def iter_blocks(
    path: str | Path, *, sample_rate: int = 16000, block_seconds: float = 60.0
) -> Iterator[torch.Tensor]:
    """A file as consecutive mono float32 blocks at `sample_rate`, never loaded whole.

    Concatenated, the blocks equal `load(path, sample_rate=...)` (to float rounding when
    resampling: each block is resampled with enough audio on both sides that its edges do not
    show; at the model's rate they are bit-identical). Memory depends on `block_seconds`,
    not on the file's length. Raises `AudioError` (possibly after some blocks were yielded) for
    unreadable, corrupt or non-finite audio.
    """
    import soundfile as sf

    meta = info(path)
    rate = meta.sample_rate
    shared = math.gcd(rate, sample_rate)
    step = rate // shared  # source samples between instants both rates sample
    margin = 0 if rate == sample_rate else _resample_margin(rate, sample_rate, step)
    block = max(1, round(block_seconds * rate / step)) * step
    buffer = torch.zeros(0)  # mono source audio from absolute sample `buffer_start` on
    buffer_start = emitted = 0  # both stay multiples of `step`, except `emitted` at the end
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, _soundfile_reason(e)) from None
    with f:
        at_end = False
        while not at_end:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(path, f"{_soundfile_reason(e)} after {emitted / rate:.3f} s") from None
            at_end = data.shape[0] < block
            check_finite(path, data, offset=buffer_start + buffer.numel(), sample_rate=rate)
            buffer = torch.cat([buffer, to_mono(torch.from_numpy(data.T.copy()))])
            end = buffer_start + buffer.numel()
            # Emit up to an instant both rates share that still has `margin` samples after it.
            stop = end if at_end else (end - margin) // step * step
            if stop > emitted:
                left = min(margin, emitted - buffer_start)
                out = resample(buffer[emitted - buffer_start - left :], rate, sample_rate)
                skip = left // step * (sample_rate // shared)
                keep = math.ceil((stop - emitted) * sample_rate / rate)
                yield out[skip : skip + keep].clone()
                emitted = stop
            drop = max(0, emitted - margin - buffer_start)
            buffer, buffer_start = buffer[drop:], buffer_start + drop
    if emitted == 0:
        raise AudioError(path, "no audio samples (zero length)")


def _directory_audio(directory: Path, *, recursive: bool) -> list[Path]:
    entries = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(p for p in entries if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def find_audio(specs: list[str], *, recursive: bool = False) -> list[str]:
    """Expand files, directories (audio files inside, sorted) and glob patterns, in order.

    A name that matches nothing is kept as it is, so that tagging it reports why it failed;
    a file listed twice is kept once.
    """
    import glob

    found: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found.extend(str(p) for p in _directory_audio(path, recursive=recursive))
        elif not path.exists() and glob.has_magic(spec):
            for match in sorted(glob.glob(spec, recursive=recursive)) or [spec]:
                match_path = Path(match)
                if match_path.is_dir():
                    found.extend(str(p) for p in _directory_audio(match_path, recursive=recursive))
                else:
                    found.append(match)
        else:
            found.append(spec)
    return list(dict.fromkeys(found))
