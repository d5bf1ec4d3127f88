"""Audio input: decode (libsndfile, else FFmpeg through PyAV), mix to mono, resample.

libsndfile (soundfile) is the fast path for the formats it reads; FFmpeg (PyAV) takes every other
container, video files included (their first audio stream). Both are read in bounded chunks, so
memory does not depend on a file's length, its channel count or its sample rate.

Samples are numpy float32 arrays throughout: torch is not imported here, so that tagging can
start without it (importing it costs 1.8 s).

Every failure is an `AudioError` whose message starts with the file's name and says why, so a
caller can report it and go on with the next file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "AUDIO_SUFFIXES",
    "FFMPEG_SUFFIXES",
    "MAX_AMPLITUDE",
    "SOUNDFILE_SUFFIXES",
    "AudioError",
    "AudioInfo",
    "check_samples",
    "find_audio",
    "info",
    "iter_blocks",
    "load",
    "resample",
    "to_mono",
]

_log = logging.getLogger(__name__)

# File name endings taken when a directory is given: what libsndfile decodes ...
SOUNDFILE_SUFFIXES = frozenset([
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
    ".snd", ".caf", ".w64", ".rf64", ".voc",
])  # fmt: skip
# ... and the audio and video containers FFmpeg decodes that libsndfile does not.
FFMPEG_SUFFIXES = frozenset([
    ".m4a", ".m4b", ".aac", ".mp4", ".m4v", ".mov", ".3gp", ".3g2", ".mkv", ".mka", ".webm",
    ".wma", ".wmv", ".asf", ".amr", ".ac3", ".eac3", ".dts", ".mp2", ".ape", ".wv", ".tta", ".mpc",
    ".spx", ".avi", ".flv", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".vob", ".ogv",
])  # fmt: skip
AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES | FFMPEG_SUFFIXES

# Samples (all channels together) decoded at a time: bounds memory whatever the channel count.
_CHUNK_SAMPLES = 1 << 21
# Source samples resampled at a time at most (a block is otherwise `block_seconds` long).
_BLOCK_SAMPLES = 1 << 23
# Sample rates asttag takes; beyond a MHz a header is more likely broken than audio.
_MAX_RATE = 1_000_000
# Float audio lives in -1..1; far beyond it the log-mel overflows (1e30 gave NaN scores), and
# no recording is 60 dB over full scale, so such a file is refused rather than guessed at.
MAX_AMPLITUDE = 1000.0


class AudioError(Exception):
    """A file that cannot be used as audio: unreadable, corrupt, empty or holding bad samples."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int  # from the header; an estimate for FFmpeg's containers, 0 when it has none
    decoder: str = "soundfile"  # or "ffmpeg"

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


# --- opening a file ---------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    """The reasons a path is no audio file that the file system can tell."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise AudioError(path, "no such file") from None
    except PermissionError:
        raise AudioError(path, "permission denied") from None
    except OSError as e:
        raise AudioError(path, f"cannot read file ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        try:
            os.scandir(path).close()
        except PermissionError:
            raise AudioError(path, "permission denied (a directory that cannot be read)") from None
        raise AudioError(path, "is a directory, not an audio file")
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except PermissionError:
        raise AudioError(path, "permission denied") from None
    except OSError as e:
        raise AudioError(path, f"cannot read file ({e.strerror or e})") from None
    if empty:
        raise AudioError(path, "empty file (0 bytes)")


def _check_rate(path: Path, rate: int) -> None:
    if not 1 <= rate <= _MAX_RATE:
        raise AudioError(path, f"unsupported sample rate {rate} Hz (asttag reads 1 Hz to 1 MHz)")


class _SoundfileReader:
    """A file libsndfile opens, read in chunks of (channels, n) float32."""

    def __init__(self, path: Path) -> None:
        import soundfile as sf

        self.path = path
        # Bytes, so that names that are not valid UTF-8 open too.
        self._file = sf.SoundFile(os.fsencode(path))
        self.sample_rate, self.channels = int(self._file.samplerate), int(self._file.channels)
        frames = self._file.frames
        # soundfile reports unknown lengths as huge numbers
        self.frames = int(frames) if 0 <= frames < 2**62 else 0

    def chunks(self) -> Iterator[np.ndarray]:
        import soundfile as sf

        step = max(1, _CHUNK_SAMPLES // self.channels)
        while True:
            try:
                data = self._file.read(step, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(self.path, f"{_soundfile_reason(e)} after {self._where()}") from None
            if len(data):
                yield data.T
            if len(data) < step:
                return

    def _where(self) -> str:
        # libsndfile's position is where its decoder stopped, finer than the chunks read.
        try:
            at = self._file.tell()
        except Exception:  # noqa: BLE001 - a decoder that lost sync may not say where it is
            return "an unknown position"
        return f"{at / self.sample_rate:.3f} s"

    def close(self) -> None:
        self._file.close()


def _soundfile_reason(error: Exception) -> str:
    text = str(error).strip()
    # soundfile prefixes its messages with the (possibly long) path: keep only the reason.
    if ": " in text and text.startswith("Error opening"):
        text = text.rsplit(": ", 1)[-1]
    return f"cannot decode audio ({text})" if text else "cannot decode audio"


@contextlib.contextmanager
def _ffmpeg_errors(path: Path, *, after: float | None = None) -> Iterator[None]:
    """FFmpeg's failures as `AudioError`s with FFmpeg's own reason (it says why in its log)."""
    import av
    import av.logging

    with av.logging.Capture() as logs:
        try:
            yield
        except av.FFmpegError as e:
            logged = [log[2].strip() for log in logs if log[2].strip()]
            reason = logged[-1] if logged else e.strerror or str(e)
            where = "" if after is None else f" after {after:.3f} s"
            raise AudioError(path, f"cannot decode audio ({reason}){where}") from None


class _FFmpegReader:
    """The first audio stream of any container FFmpeg opens, in chunks of (channels, n) float32."""

    def __init__(self, path: Path) -> None:
        import av
        import av.logging

        self.path = path
        # FFmpeg's reasons, for `_ffmpeg_errors`, every time (not only the first time seen).
        av.logging.set_level(av.logging.ERROR)
        av.logging.set_skip_repeated(False)
        # A Python file object, so that names that are not valid UTF-8 open too.
        self._handle = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._container = None
        try:
            with _ffmpeg_errors(path):
                self._container = av.open(self._handle, mode="r", metadata_errors="ignore")
                if not self._container.streams.audio:
                    raise AudioError(path, "no audio stream in the file")
                stream = self._container.streams.audio[0]
                self._frames = self._container.decode(stream)
                self._resampler: av.AudioResampler | None = av.AudioResampler(format="fltp")
                # The first frame's rate is the true one (HE-AAC doubles the header's).
                self._pending = self._next_arrays()
        except BaseException:
            self.close()
            raise
        if not self._pending:
            self.close()
            raise AudioError(path, "no audio samples (zero length)")
        self.sample_rate = self._rate
        self.channels = int(self._pending[0].shape[0])
        seconds = (float(stream.duration * stream.time_base)
                   if stream.duration and stream.time_base else
                   self._container.duration / 1e6 if self._container.duration else 0.0)
        self.frames = round(seconds * self.sample_rate)

    def _next_arrays(self) -> list[np.ndarray]:
        """The next decoded frame as arrays; an empty list at the end of the stream."""
        if self._resampler is None:
            return []
        for frame in self._frames:
            out = self._resampler.resample(frame)
            if out:
                self._rate = int(out[0].sample_rate)
                return [f.to_ndarray() for f in out]
        last, self._resampler = self._resampler.resample(None), None
        return [f.to_ndarray() for f in last]

    def chunks(self) -> Iterator[np.ndarray]:
        step = max(1, _CHUNK_SAMPLES // self.channels)
        parts, held, decoded = self._pending, sum(a.shape[1] for a in self._pending), 0
        while parts:
            with _ffmpeg_errors(self.path, after=(decoded + held) / self.sample_rate):
                more = self._next_arrays()
            if held >= step or not more:
                yield np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
                decoded, parts, held = decoded + held, [], 0
            parts += more
            held += sum(a.shape[1] for a in more)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._handle.close()


def _open(path: str | Path) -> _SoundfileReader | _FFmpegReader:
    """A reader for the file: libsndfile when it opens it, FFmpeg otherwise."""
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        reader: _SoundfileReader | _FFmpegReader = _SoundfileReader(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        soundfile_error = AudioError(path, _soundfile_reason(e))
        try:
            reader = _FFmpegReader(path)
        except AudioError:
            # Both failed: the reason of the decoder the name says the file is for.
            if path.suffix.lower() in SOUNDFILE_SUFFIXES:
                raise soundfile_error from None
            raise
    try:
        _check_rate(path, reader.sample_rate)
    except AudioError:
        reader.close()
        raise
    return reader


def info(path: str | Path) -> AudioInfo:
    """Sample rate, channels and length of a file, without decoding it (FFmpeg: its first frame)."""
    reader = _open(path)
    reader.close()
    if reader.frames <= 0 and isinstance(reader, _SoundfileReader):
        raise AudioError(path, "no audio samples (zero length)")
    decoder = "soundfile" if isinstance(reader, _SoundfileReader) else "ffmpeg"
    return AudioInfo(str(path), reader.sample_rate, reader.channels, reader.frames, decoder)


# --- samples -----------------------------------------------------------------------------------


def check_samples(
    path: str | Path, samples: np.ndarray, *, offset: int = 0, sample_rate: int | None = None
) -> None:
    """Fail on NaN/Inf and on magnitudes over `MAX_AMPLITUDE`; with `sample_rate`, say where.

    `samples` is (channels, n) or (n,); `offset` is the number of samples before them.
    """
    bad = ~np.isfinite(samples)
    if bad.any():
        raise AudioError(path, "audio contains NaN or infinite samples"
                               f"{_first(bad, offset, sample_rate, ' (first at {} s)')}")
    bad = np.abs(samples) > MAX_AMPLITUDE
    if bad.any():
        peak = float(np.abs(samples).max())
        raise AudioError(path, f"audio samples out of range (peak {peak:.3g}"
                               f"{_first(bad, offset, sample_rate, ', first at {} s')}; audio is "
                               f"expected within -1 and 1, asttag takes up to {MAX_AMPLITUDE:g})")


def _first(bad: np.ndarray, offset: int, sample_rate: int | None, template: str) -> str:
    """Where the first bad sample is, in `template`; nothing without a sample rate."""
    if not sample_rate:
        return ""
    first = int(np.argmax(bad.any(axis=0) if bad.ndim == 2 else bad))
    return template.format(f"{(offset + first) / sample_rate:.3f}")


def _mono_chunks(reader: _SoundfileReader | _FFmpegReader) -> Iterator[np.ndarray]:
    """The reader's audio as checked mono float32 chunks."""
    done = 0
    for chunk in reader.chunks():
        check_samples(reader.path, chunk, offset=done, sample_rate=reader.sample_rate)
        done += chunk.shape[1]
        # Row-major, whichever decoder's layout: the mean then adds whole channel rows, five
        # times faster than down soundfile's interleaved columns, and rounds alike for both.
        yield to_mono(np.ascontiguousarray(chunk))


def load(path: str | Path, *, sample_rate: int | None = 16000) -> np.ndarray:
    """The whole file as a mono float32 array (samples,), resampled to `sample_rate`.

    For short clips; long recordings go through `iter_blocks` instead.
    """
    reader = _open(path)
    try:
        parts = list(_mono_chunks(reader))
    finally:
        reader.close()
    if not parts:
        raise AudioError(path, "no audio samples (zero length)")
    return resample(np.concatenate(parts), reader.sample_rate, sample_rate or reader.sample_rate)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(channels, samples) or (samples,) array -> (samples,), by averaging the channels."""
    if wave.ndim == 1:
        return wave
    if wave.ndim != 2:
        raise ValueError(f"expected (channels, samples) audio, got shape {tuple(wave.shape)}")
    return wave.mean(axis=0) if wave.shape[0] > 1 else wave[0]


# --- resampling --------------------------------------------------------------------------------

# The windowed sinc both resamplers use: torchaudio's defaults (Hann window, 6 zero crossings
# of the lower rate, cut-off at 99% of its Nyquist frequency).
_ZERO_CROSSINGS = 6
_ROLLOFF = 0.99
# The polyphase kernel has one row per output phase (new / gcd rows of about orig / gcd taps):
# tiny for the usual rates, gigabytes when the rates share no factor (16001 -> 16000 Hz). Past
# this many kernel taps the gathering resampler below takes over.
_TORCHAUDIO_MAX_TAPS = 1 << 20
# Input (or output) samples one polyphase matrix product takes at most: a few hundred KB, so
# the products run from the CPU's cache and memory does not grow with the input.
_POLYPHASE_CHUNK = 1 << 17
# Outputs the polyphase resampler computes per matrix row at least: with one or two phases
# (48 -> 16 kHz, 8 -> 16 kHz) a row of one frame is too thin for BLAS to be fast.
_POLYPHASE_ROW_OUTPUTS = 8
# Output samples the gathering resampler computes at once.
_SINC_CHUNK = 4096


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling of a float32 array along its last axis; a no-op when the rates
    agree. Other dtypes are converted to float32.

    torchaudio.functional.resample at its defaults, computed in numpy (within 1e-6 of it,
    tested) where its polyphase kernel is small; for rates that share no useful factor
    (16001 Hz, 11127 Hz, 44101 Hz) the same windowed sinc by `_sinc_resample`, whose memory
    grows with the rates, not with their lack of common factors.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if orig_rate == new_rate:
        return wave
    if wave.ndim != 1:
        rows = [resample(row, orig_rate, new_rate) for row in wave.reshape(-1, wave.shape[-1])]
        return np.stack(rows).reshape(*wave.shape[:-1], -1)
    shared = math.gcd(orig_rate, new_rate)
    up, down = new_rate // shared, orig_rate // shared
    if up * (down + 2 * _kernel_width(up, down)) <= _TORCHAUDIO_MAX_TAPS:
        return _polyphase_resample(wave, up, down)
    return _sinc_resample(wave, up, down)


def _kernel_width(up: int, down: int) -> int:
    """Input samples the kernel reaches on either side of a frame: 6 zero crossings of the lower
    rate, as torchaudio counts them."""
    return math.ceil(_ZERO_CROSSINGS * down / (min(up, down) * _ROLLOFF))


def _output_length(samples: int, up: int, down: int) -> int:
    """ceil(samples * up / down), torchaudio's output length."""
    return -(-samples * up // down)


def _polyphase_kernel(up: int, down: int) -> np.ndarray:
    """torchaudio's resampling kernel, (up, 2 * width + down) float32: row j holds the taps of
    output phase j (an output j * down / up input samples after its frame's start) over the
    input samples -width .. width + down - 1 around that start.

    Computed in float32 operation by operation as torchaudio does for float32 audio: rounding
    the tap positions in float32 moves taps by up to 3e-5 (22050 Hz), so a float64 kernel
    would not stay within 1e-6 of torchaudio's output. The sine and cosine alone are taken in
    float64 and rounded, the closest numpy comes to torch's float32 ones (within one ulp).
    """
    f32 = np.float32
    width, cutoff = _kernel_width(up, down), min(up, down) * _ROLLOFF
    taps = np.arange(-width, width + down, dtype=f32) / f32(down)
    t = (taps - np.arange(up, dtype=f32)[:, None] / f32(up)) * f32(cutoff)  # in cut-off periods
    t = np.clip(t, f32(-_ZERO_CROSSINGS), f32(_ZERO_CROSSINGS))
    window = np.square(_cos(t * f32(math.pi) / f32(_ZERO_CROSSINGS) / f32(2)))
    angle = t * f32(math.pi)
    sinc = np.divide(_sin(angle), angle, out=np.ones_like(angle), where=angle != 0)
    return sinc * (window * f32(cutoff / down))


def _sin(x: np.ndarray) -> np.ndarray:
    return np.sin(x.astype(np.float64)).astype(x.dtype)


def _cos(x: np.ndarray) -> np.ndarray:
    return np.cos(x.astype(np.float64)).astype(x.dtype)


def _polyphase_resample(wave: np.ndarray, up: int, down: int) -> np.ndarray:
    """torchaudio's polyphase resampling of a mono float32 array, by matrix products.

    Frame i, outputs i * up .. i * up + up - 1, is the kernel applied to the input from sample
    i * down - width on (zeros outside the input). `group` consecutive frames make one output
    row, which starts `stride` = group * down input samples after the row before: cut into rows
    of `stride` samples, the input meets the grouped kernel block by block as plain matrices
    (views shifted by whole rows, not copies), a few BLAS products per chunk of rows.
    """
    kernel, width = _polyphase_kernel(up, down), _kernel_width(up, down)
    group = max(1, _POLYPHASE_ROW_OUTPUTS // up)
    stride, row_outputs = group * down, group * up
    grouped = _grouped_kernel(kernel, group, down)
    blocks = -(-len(grouped) // stride)  # input rows one output row reads
    count = _output_length(len(wave), up, down)
    rows = -(-count // row_outputs)
    out = np.empty(rows * row_outputs, dtype=np.float32)
    step = max(1, _POLYPHASE_CHUNK // max(stride, row_outputs))
    for first in range(0, rows, step):
        n = min(step, rows - first)
        start = first * stride - width
        source = _zero_padded(wave, start, start + (n + blocks - 1) * stride).reshape(-1, stride)
        target = out[first * row_outputs : (first + n) * row_outputs].reshape(n, row_outputs)
        np.matmul(source[:n], grouped[:stride], out=target)
        for b in range(1, blocks):
            part = grouped[b * stride : (b + 1) * stride]
            target += source[b : b + n, : len(part)] @ part
    return out[:count]


def _grouped_kernel(kernel: np.ndarray, group: int, down: int) -> np.ndarray:
    """(span, group * up) float32: columns f * up .. (f + 1) * up - 1 hold the kernel of frame f
    of a group, its taps `f * down` input samples further on than frame 0's."""
    up, taps = kernel.shape
    grouped = np.zeros(((group - 1) * down + taps, group * up), dtype=np.float32)
    for f in range(group):
        grouped[f * down : f * down + taps, f * up : (f + 1) * up] = kernel.T
    return grouped


def _zero_padded(wave: np.ndarray, start: int, stop: int) -> np.ndarray:
    """wave[start:stop] as a new array, zeros where the range runs past either end."""
    out = np.zeros(stop - start, dtype=np.float32)
    first, last = max(start, 0), min(stop, len(wave))
    out[first - start : last - start] = wave[first:last]
    return out


def _sinc_resample(wave: np.ndarray, up: int, down: int) -> np.ndarray:
    """torchaudio's windowed sinc on a mono float32 array, with the taps gathered per output
    sample instead of by a product per phase.

    Output sample k sits at input position k * down / up, and the output has
    ceil(n * up / down) samples, as torchaudio's; audio outside the input is zero. Output k
    uses the kernel of output k + up, so one period of kernels is built (at most `up` rows)
    and indexed. The kernel is float64, rounded to float32.
    """
    count = _output_length(len(wave), up, down)
    cutoff = min(up, down) * _ROLLOFF / down  # the lower rate's band edge, in input cycles
    reach = math.ceil(_ZERO_CROSSINGS / cutoff) + 1  # in input samples
    taps = np.arange(-reach, reach + 1)
    # Row j: output j's taps; its position lies (j * down mod up) / up after an input sample.
    phase = np.arange(min(up, count)) * down % up
    t = np.clip((taps - phase[:, None] / up) * cutoff, -_ZERO_CROSSINGS, _ZERO_CROSSINGS)
    window = np.cos(t * (math.pi / (2 * _ZERO_CROSSINGS))) ** 2
    kernels = (np.sinc(t) * window * cutoff).astype(np.float32)
    padded = _zero_padded(wave, -reach, len(wave) + reach + 1)
    out = np.empty(count, dtype=np.float32)
    for first in range(0, count, _SINC_CHUNK):
        k = np.arange(first, min(first + _SINC_CHUNK, count))
        at = (k * down // up)[:, None] + taps + reach  # taps' indices in `padded`
        out[first : first + len(k)] = np.einsum("ij,ij->i", padded[at], kernels[k % up])
    return out


def _resample_margin(orig_rate: int, new_rate: int, step: int) -> int:
    """Source samples of context that make block-wise resampling equal whole-file resampling.

    The sinc kernel reaches 6 zero crossings (of the lower rate) plus one phase step on each
    side; 64 periods is a wide margin, rounded up to whole phase steps so every block starts on a
    sample both rates share.
    """
    periods = math.ceil(64 * orig_rate / min(orig_rate, new_rate)) + step
    return math.ceil(periods / step) * step


def iter_blocks(
    path: str | Path, *, sample_rate: int = 16000, block_seconds: float = 60.0
) -> Iterator[np.ndarray]:
    """A file as consecutive mono float32 arrays (blocks) at `sample_rate`, never loaded whole.

    Concatenated, the blocks equal `load(path, sample_rate=...)` (to float rounding when
    resampling: each block is resampled with enough audio on both sides that its edges do not
    show; at the model's rate they are bit-identical). Memory depends on `block_seconds`,
    not on the file's length. Raises `AudioError` (possibly after some blocks were yielded) for
    unreadable, corrupt or out-of-range audio.
    """
    reader = _open(path)
    try:
        rate = reader.sample_rate
        shared = math.gcd(rate, sample_rate)
        step = rate // shared  # source samples between instants both rates sample
        margin = 0 if rate == sample_rate else _resample_margin(rate, sample_rate, step)
        block = max(1, min(round(block_seconds * rate), _BLOCK_SAMPLES) // step) * step
        buffer = np.zeros(0, dtype=np.float32)  # mono source audio from sample `buffer_start` on
        buffer_start = emitted = 0  # both stay multiples of `step`, except `emitted` at the end
        chunks = _mono_chunks(reader)
        at_end = False
        while not at_end:
            parts, held = [buffer], buffer.size
            while held < emitted - buffer_start + block + margin and not at_end:
                chunk = next(chunks, None)
                at_end = chunk is None
                if chunk is not None:
                    parts.append(chunk)
                    held += chunk.size
            buffer = np.concatenate(parts)
            end = buffer_start + buffer.size
            # Emit up to an instant both rates share that still has `margin` samples after it.
            stop = end if at_end else min(emitted + block, (end - margin) // step * step)
            if stop > emitted:
                left = min(margin, emitted - buffer_start)
                out = resample(buffer[emitted - buffer_start - left : stop - buffer_start + margin],
                               rate, sample_rate)
                skip = left // step * (sample_rate // shared)
                keep = math.ceil((stop - emitted) * sample_rate / rate)
                yield out[skip : skip + keep].copy()
                emitted = stop
            drop = max(0, emitted - margin - buffer_start)
            buffer, buffer_start = buffer[drop:], buffer_start + drop
    finally:
        reader.close()
    if emitted == 0:
        raise AudioError(path, "no audio samples (zero length)")


# --- finding the inputs ------------------------------------------------------------------------


def _directory_audio(directory: str, *, recursive: bool) -> list[str]:
    """Audio files in a directory, sorted; a sub-directory that cannot be read is kept as an
    input of its own, so that tagging it says "permission denied" instead of skipping it."""
    found: list[str] = []

    def unreadable(error: OSError) -> None:
        found.append(str(error.filename))

    for parent, dirs, files in os.walk(directory, onerror=unreadable):
        found += [os.path.join(parent, name) for name in files
                  if Path(name).suffix.lower() in AUDIO_SUFFIXES
                  and os.path.isfile(os.path.join(parent, name))]
        if not recursive:
            dirs.clear()
    return [str(p) for p in sorted(Path(f) for f in found)]


def find_audio(specs: list[str], *, recursive: bool = False) -> list[str]:
    """Expand files, directories (audio files inside, sorted) and glob patterns, in order.

    A name that matches nothing is kept as it is, so that tagging it reports why it failed; so is
    a directory named like an audio file (`x.wav/`). A file named twice, under any spelling
    (`a.wav`, `./a.wav`, its absolute path), is one input, kept under its first spelling: the
    journal of a resumable run knows files by absolute path, so this keeps `-o FILE` and stdout
    the same. Names that are not valid UTF-8 travel as Python does them (surrogate escapes).
    """
    import glob

    found: list[str] = []
    for spec in specs:
        if os.path.isdir(spec) and Path(spec).suffix.lower() not in AUDIO_SUFFIXES:
            found.extend(_directory_audio(spec, recursive=recursive))
        elif not os.path.lexists(spec) and glob.has_magic(spec):
            for match in sorted(glob.glob(spec, recursive=recursive)) or [spec]:
                if os.path.isdir(match):
                    found.extend(_directory_audio(match, recursive=recursive))
                else:
                    found.append(match)
        else:
            found.append(spec)
    return _once_each(found)


def _once_each(paths: list[str]) -> list[str]:
    first: dict[str, str] = {}
    for path in paths:
        spelling = first.setdefault(os.path.abspath(path), path)
        if spelling != path:
            _log.warning("%s names the same file as %s: tagged once", path, spelling)
    return list(first.values())
