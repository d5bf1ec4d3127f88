"""YAMNet as a teacher: frame scores over a recording, mapped onto AudioSet's 527 classes.

YAMNet (Google, Apache-2.0) tags 521 of AudioSet's 527 classes from 0.96 s log-mel patches. Its
TFLite file runs with `ai-edge-litert`, an optional extra: `pip install 'asttag[yamnet]'`.

Framing: the TFLite model takes exactly 15,600 samples at 16 kHz (0.975 s: one 96-frame patch of
a 25 ms / 10 ms STFT) and returns one score per class. We step it by 0.48 s, YAMNet's own patch
hop, so every sample is seen by two frames, as in the original model; the last frame is padded
with zeros. Times are frame centres, so "a frame inside a window" means its centre is inside.
"""

from __future__ import annotations

import logging
import math
import zipfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SAMPLE_RATE",
    "FRAME_SAMPLES",
    "FRAME_SECONDS",
    "HOP_SAMPLES",
    "HOP_SECONDS",
    "NUM_CLASSES",
    "MISSING_AUDIOSET_CLASSES",
    "YamnetTeacher",
    "frame_count",
    "default_labels",
    "read_embedded_labels",
    "audioset_index",
    "audioset_mask",
    "to_audioset",
    "window_targets",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_SAMPLES = 15600
HOP_SAMPLES = 7680
NUM_CLASSES = 521
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
HOP_SECONDS = HOP_SAMPLES / SAMPLE_RATE

# The AudioSet classes YAMNet was not trained on (too few or unreliable labels).
MISSING_AUDIOSET_CLASSES = (
    "Male speech, man speaking",
    "Female speech, woman speaking",
    "Battle cry",
    "Male singing",
    "Female singing",
    "Funny music",
)

INSTALL_HINT = "pip install 'asttag[yamnet]'"
_TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite file


@cache
def default_labels() -> tuple[str, ...]:
    """YAMNet's 521 class names in output order: AudioSet's order without the 6 missing classes."""
    from .labels import audioset

    missing = set(MISSING_AUDIOSET_CLASSES)
    return tuple(name for name in audioset().names if name not in missing)


def read_embedded_labels(path: str | Path) -> tuple[str, ...] | None:
    """The label list packed in a .tflite file's metadata, or None if it carries none.

    TFLite metadata stores associated files (here yamnet_label_list.txt) as a zip archive appended
    to the flatbuffer, so zipfile finds it by reading the file from its end.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            texts = [n for n in archive.namelist() if n.endswith(".txt")]
            if not texts:
                return None
            lines = archive.read(texts[0]).decode("utf-8").splitlines()
    except zipfile.BadZipFile:
        return None
    return tuple(line.strip() for line in lines if line.strip())


def audioset_index(labels: Sequence[str] | None = None) -> np.ndarray:
    """For each YAMNet class (in `labels` order), its position among AudioSet's 527 classes."""
    return _audioset_index(default_labels() if labels is None else tuple(labels)).copy()


@cache  # every scored window maps through it
def _audioset_index(labels: tuple[str, ...]) -> np.ndarray:
    from .labels import audioset

    positions = {name: i for i, name in enumerate(audioset().names)}
    unknown = [name for name in labels if name not in positions]
    if unknown:
        raise ValueError(f"YAMNet classes not among AudioSet's display names: {unknown[:5]}")
    return np.array([positions[name] for name in labels], dtype=np.int64)


def audioset_mask(labels: Sequence[str] | None = None) -> np.ndarray:
    """Boolean [527]: True for the AudioSet classes the teacher gives a score for."""
    from .labels import audioset

    mask = np.zeros(len(audioset()), dtype=bool)
    mask[audioset_index(labels)] = True
    return mask


def to_audioset(scores: np.ndarray, *, labels: Sequence[str] | None = None) -> np.ndarray:
    """Map YAMNet scores [..., 521] onto AudioSet's [..., 527]; classes without signal are NaN.

    labels: YAMNet's class names in output order (default: `default_labels()`).
    """
    from .labels import audioset

    scores = np.asarray(scores)
    index = audioset_index(labels)
    if scores.shape[-1] != len(index):
        raise ValueError(f"expected {len(index)} teacher scores per frame, got {scores.shape[-1]}")
    out = np.full((*scores.shape[:-1], len(audioset())), np.nan, dtype=np.float32)
    out[..., index] = scores
    return out


def window_targets(
    times: np.ndarray,
    scores: np.ndarray,
    window_starts: np.ndarray | Sequence[float],
    window_seconds: float,
) -> np.ndarray:
    """Teacher targets per student window: the max over teacher frames centred inside each window.

    times: frame centres in seconds [n]; scores: [n, classes]; window_starts: seconds [w].
    A window too short to hold a frame centre takes the frame whose centre is nearest its own.
    Returns [w, classes]; classes that are NaN (no teacher signal) stay NaN.
    """
    times = np.asarray(times, dtype=np.float64)
    scores = np.asarray(scores)
    starts = np.asarray(window_starts, dtype=np.float64)
    if times.ndim != 1 or scores.ndim != 2 or len(times) != len(scores):
        raise ValueError(
            f"times {times.shape} and scores {scores.shape} do not describe the same frames"
        )
    if len(times) == 0:
        raise ValueError("no teacher frames to take targets from")
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")
    out = np.empty((len(starts), scores.shape[1]), dtype=scores.dtype)
    for w, start in enumerate(starts):
        inside = (times >= start) & (times < start + window_seconds)
        if inside.any():
            out[w] = scores[inside].max(axis=0)
        else:
            out[w] = scores[np.argmin(np.abs(times - (start + window_seconds / 2)))]
    return out


def frame_count(num_samples: int) -> int:
    """Frames needed to cover `num_samples` at YAMNet's hop, the last one zero-padded."""
    return 1 + math.ceil(max(0, num_samples - FRAME_SAMPLES) / HOP_SAMPLES)


class YamnetTeacher:
    """A loaded YAMNet model. Build it with `from_file`; tests may pass any object with the
    TFLite interpreter's methods (get_input_details, get_output_details, set_tensor, invoke,
    get_tensor, allocate_tensors)."""

    def __init__(
        self, interpreter: Any, *, labels: Sequence[str], source: str = "<interpreter>"
    ) -> None:
        self.source = source
        self.labels = tuple(labels)
        if len(self.labels) != NUM_CLASSES:
            raise ValueError(
                f"{source}: expected {NUM_CLASSES} YAMNet labels, got {len(self.labels)}"
            )
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        input_shape = [tuple(int(d) for d in detail["shape"]) for detail in inputs]
        if input_shape != [(FRAME_SAMPLES,)]:
            raise ValueError(
                f"{source}: not YAMNet: expected one input of {FRAME_SAMPLES} samples, "
                f"got shapes {input_shape}"
            )
        scores = [d for d in outputs if int(d["shape"][-1]) == NUM_CLASSES]
        if not scores:
            shapes = [tuple(int(x) for x in d["shape"]) for d in outputs]
            raise ValueError(
                f"{source}: not YAMNet: no output with {NUM_CLASSES} classes (outputs {shapes})"
            )
        interpreter.allocate_tensors()
        self._interpreter = interpreter
        self._input = inputs[0]["index"]
        self._output = scores[0]["index"]

    @classmethod
    def from_file(cls, path: str | Path, *, num_threads: int | None = None) -> YamnetTeacher:
        """Load a YAMNet .tflite file; its embedded label list is used when it has one."""
        path = Path(path)
        _check_tflite_file(path)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ImportError(
                f"{path}: running YAMNet needs ai-edge-litert: {INSTALL_HINT}"
            ) from None
        try:
            interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"{path}: cannot load as a TFLite model ({e})") from None
        labels = read_embedded_labels(path)
        if labels is None:
            log.info("%s has no label list; using AudioSet's order minus the 6 missing", path)
            labels = default_labels()
        return cls(interpreter, labels=labels, source=str(path))

    def frame_scores(self, wave16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores of every 0.96 s frame (0.48 s hop) of a mono 16 kHz waveform in [-1, 1].

        Returns (times [n] frame centres in seconds, scores [n, 521] in [0, 1]).
        """
        wave = np.asarray(wave16k, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"expected a mono waveform (samples,), got shape {wave.shape}")
        if wave.size == 0:
            raise ValueError("cannot score an empty waveform")
        n = frame_count(wave.size)
        padded = np.zeros((n - 1) * HOP_SAMPLES + FRAME_SAMPLES, dtype=np.float32)
        padded[: wave.size] = wave
        scores = np.empty((n, NUM_CLASSES), dtype=np.float32)
        for i in range(n):
            start = i * HOP_SAMPLES
            self._interpreter.set_tensor(self._input, padded[start : start + FRAME_SAMPLES])
            self._interpreter.invoke()
            scores[i] = self._interpreter.get_tensor(self._output).reshape(-1)
        times = np.arange(n) * HOP_SECONDS + FRAME_SECONDS / 2
        return times, scores

    def to_audioset(self, scores: np.ndarray) -> np.ndarray:
        """This model's scores [..., 521] on AudioSet's 527 classes (NaN where it has no class)."""
        return to_audioset(scores, labels=self.labels)

    def audioset_mask(self) -> np.ndarray:
        """Boolean [527]: the AudioSet classes this model scores."""
        return audioset_mask(self.labels)


def _check_tflite_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected a YAMNet .tflite model)")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a YAMNet .tflite model")
    with path.open("rb") as f:
        head = f.read(8)
    if head[4:8] != _TFLITE_IDENTIFIER:
        raise ValueError(
            f"{path}: not a TFLite model (no TFL3 identifier); expected YAMNet's .tflite file"
        )
