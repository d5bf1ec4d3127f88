"""Distillation: a teacher's scores as the targets a (small) student AST trains on.

Two kinds of teacher:
- any model asttag loads (`ModelTeacher`): it scores every training batch as the student sees
  it (after augmentation), through the training engine's TargetSource hook. This is how the
  published 88M-parameter AST is compressed into a small CPU model.
- YAMNet (`asttag.yamnet`): a TFLite model on another input, so it cannot see the student's
  batches. Its scores are computed once per training window and written as a soft-target
  manifest (`write_soft_manifest`), which the engine reads like any other manifest.

Targets per student window are the teacher's clip-level scores: the max over its frames centred
inside the window, mapped onto AudioSet's 527 classes by display name. YAMNet lacks 6 AudioSet
classes (`asttag.yamnet.MISSING_AUDIOSET_CLASSES`). A manifest leaves them out, so they read as
target 0: the student learns never to predict them. That is deliberate: masking them out of the
loss would leave their output units untrained, at sigmoid(init) ~ 0.5 for every input, ranking
them among every clip's top tags. Their scores from a YAMNet-distilled model mean nothing, and
the model card says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from .atomic import atomic_write_text
from .choices import DEFAULT_DEVICE
from .errors import about
from .rundir import RECIPE_FILE, TEACHER_FILE, WINDOW_DIR

if TYPE_CHECKING:
    import torch

    from .features import FeatureConfig
    from .labels import LabelSet
    from .model import TaggingModel
    from .recipes import Recipe
    from .training import Observer, RunResult, Runtime

__all__ = [
    "DistillError",
    "ModelTeacher",
    "FrameTeacher",
    "SoftTarget",
    "MIN_SCORE",
    "window_scores",
    "cut_windows",
    "soft_record",
    "write_soft_manifest",
    "soft_scores",
    "write_label_file",
    "is_yamnet_file",
    "cut_recordings",
    "teacher_scores",
    "distill",
    "resume_distill",
]

# Scores below this are written as 0: they change no ranking a user sees, and leaving them out
# keeps a manifest of thousands of 527-class windows small.
MIN_SCORE = 1e-4
SCORE_DECIMALS = 4
SAMPLE_RATE = 16000
LABEL_FILE = "labels.csv"
MANIFEST_FILE = "manifest.jsonl"


class DistillError(ValueError):
    """A teacher, student or data that cannot be used together: the message says why."""


# --------------------------------------------------------------------------- model teachers


class ModelTeacher:
    """An asttag model as teacher: the engine's TargetSource, scoring each batch.

    The student's normalised input is converted to the teacher's normalisation and length
    (`asttag.features.convert_input`); both must use the same mel bins, since a log-mel
    spectrogram cannot be re-binned without the audio. Targets are the teacher's probabilities
    for the student's classes, matched by label id, so the student may learn a subset.
    """

    def __init__(self, teacher: TaggingModel, *, features: FeatureConfig, labels: LabelSet) -> None:
        if teacher.features.num_mel_bins != features.num_mel_bins:
            raise about(DistillError(
                f"the teacher takes {teacher.features.num_mel_bins} mel bins and the student "
                f"{features.num_mel_bins}: give the student the teacher's"
            ), "num_mel_bins")
        unknown = [name for i, name in zip(labels.ids, labels.names) if i not in teacher.labels.ids]
        if unknown:
            raise DistillError(
                f"{len(unknown)} student class(es) the teacher does not know: {unknown[:5]}"
            )
        import torch

        self.teacher = teacher.eval()
        self.device: torch.device | None = None  # where the teacher is, once it has had a batch
        self.features = features
        self.index = torch.tensor([teacher.labels.ids.index(i) for i in labels.ids])

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch

        from .features import convert_input

        if inputs.device != self.device:
            self.teacher.to(inputs.device)
            self.device = inputs.device
        x = convert_input(inputs.float(), self.features, self.teacher.features)
        with torch.inference_mode():
            probabilities = self.teacher.predict(x)
        # Out of inference mode: the loss's autograd graph may not hold inference tensors.
        return probabilities[:, self.index.to(inputs.device)].clone().to(targets.dtype)


# --------------------------------------------------------------------------- frame teachers


@runtime_checkable  # teacher_scores tells it from a model by its methods
class FrameTeacher(Protocol):
    """A teacher that scores a waveform frame by frame (YAMNet, or a test's stand-in)."""

    def frame_scores(self, wave16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def to_audioset(self, scores: np.ndarray) -> np.ndarray: ...


def window_scores(teacher: FrameTeacher, wave16k: np.ndarray) -> np.ndarray:
    """The teacher's scores for one window [527]: the max over its frames; NaN without signal.

    The window is the whole waveform (cut it first, with `cut_windows`).
    """
    from .yamnet import window_targets

    times, scores = teacher.frame_scores(np.asarray(wave16k, dtype=np.float32))
    mapped = teacher.to_audioset(scores)
    return window_targets(times, mapped, [0.0], len(wave16k) / SAMPLE_RATE)[0]


def cut_windows(wave: np.ndarray, *, window_samples: int, min_samples: int) -> list[np.ndarray]:
    """Consecutive windows of `window_samples`; a shorter last piece is kept if it holds at
    least `min_samples` (a recording shorter than one window is always kept whole)."""
    if window_samples < 1:
        raise DistillError(f"window length must be at least 1 sample, got {window_samples}")
    pieces = [wave[i : i + window_samples] for i in range(0, len(wave), window_samples)]
    if len(pieces) > 1 and len(pieces[-1]) < min_samples:
        pieces.pop()
    return pieces


# --------------------------------------------------------------------------- soft manifests


@dataclass(frozen=True)
class SoftTarget:
    """One training window and its teacher scores [527] (NaN: no teacher signal)."""

    path: Path
    scores: np.ndarray


def soft_record(target: SoftTarget, labels: LabelSet, *, root: Path) -> dict:
    """The manifest line of a window: its path relative to `root`, scores by label id.

    NaN (no signal) and scores under MIN_SCORE are left out and so read as 0.
    """
    if len(target.scores) != len(labels):
        raise DistillError(f"{target.path}: {len(target.scores)} scores for {len(labels)} labels")
    scores = {
        label_id: round(float(score), SCORE_DECIMALS)
        for label_id, score in zip(labels.ids, target.scores)
        if math.isfinite(score) and score >= MIN_SCORE
    }
    return {"path": target.path.relative_to(root).as_posix(), "scores": scores}


def write_soft_manifest(targets: Iterable[SoftTarget], path: str | Path, *, labels: LabelSet) -> Path:
    """Write a JSON-lines soft-target manifest (and `labels.csv` beside it), atomically.

    Paths are written relative to the manifest's folder; read it with the manifest layout and
    `label_file=labels.csv`, so every class is in the label set even where no window scores it.
    """
    path = Path(path)
    lines = [json.dumps(soft_record(t, labels, root=path.parent)) for t in targets]
    if not lines:
        raise DistillError(f"{path}: no windows to write")
    write_label_file(labels, path.parent / LABEL_FILE)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def soft_scores(scores: dict[str, float], labels: LabelSet) -> np.ndarray:
    """A manifest line's scores (soft_record's "scores") back in label order; classes it leaves
    out read as 0. KeyError names a label the set does not have."""
    vector = np.zeros(len(labels), dtype=np.float32)
    for key, value in scores.items():
        vector[labels.index(key)] = value
    return vector


def write_label_file(labels: LabelSet, path: str | Path) -> Path:
    """The label set as AudioSet's class_labels_indices.csv layout, atomically."""
    atomic_write_text(path, labels.to_csv())
    return Path(path)


# --------------------------------------------------------------------------- distillation runs


def is_yamnet_file(path: str | Path) -> bool:
    """Whether a --teacher names a TFLite file (YAMNet) rather than an asttag model."""
    return Path(path).suffix.lower() == ".tflite"


def cut_recordings(
    files: Sequence[str | Path], out_dir: str | Path, *, window_seconds: float, min_seconds: float = 1.0,
) -> tuple[list[tuple[Path, np.ndarray]], list[tuple[str, str]]]:
    """Cut recordings into student windows, written to out_dir as 16 kHz FLAC.

    The engine trains on a clip's first window only, so a long recording must become several
    clips to be heard whole. Returns (path, waveform) per window and (file, reason) for every
    recording that could not be read.
    """
    import soundfile as sf

    from .audio import AudioError, load

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    window_samples = round(window_seconds * SAMPLE_RATE)
    windows, failed = [], []
    for number, file in enumerate(files):
        try:
            wave = load(file, sample_rate=SAMPLE_RATE)
        except AudioError as e:
            failed.append((str(file), e.reason))
            continue
        pieces = cut_windows(wave, window_samples=window_samples, min_samples=round(min_seconds * SAMPLE_RATE))
        for k, piece in enumerate(pieces):
            path = out / f"{number:06d}_{k:03d}_{Path(file).stem}.flac"
            sf.write(str(path), piece, SAMPLE_RATE, subtype="PCM_16")
            windows.append((path, piece))
    if not windows:
        reasons = "; ".join(f"{f}: {r}" for f, r in failed[:3])
        raise DistillError(f"no usable recordings among {len(files)} ({reasons})")
    return windows, failed


def teacher_scores(
    teacher: FrameTeacher | TaggingModel, windows: Sequence[tuple[Path, np.ndarray]], *,
    device: str = DEFAULT_DEVICE, batch_size: int = 16,
) -> tuple[LabelSet, np.ndarray]:
    """The teacher's label set and its scores [windows, classes] for every window.

    A frame teacher (YAMNet) is mapped to AudioSet's 527 classes (NaN: no signal); an asttag
    model scores each window as one input, cut or zero-padded to its own length.
    """
    if isinstance(teacher, FrameTeacher):
        from .labels import audioset

        return audioset(), np.stack([window_scores(teacher, wave) for _, wave in windows])
    from .datasets import Example
    from .inference import predict_examples

    examples = [Example(path, soft=np.zeros(len(teacher.labels), dtype=np.float32)) for path, _ in windows]
    return teacher.labels, predict_examples(teacher, examples, batch_size=batch_size, device=device)


def distill(
    recipe: Recipe,
    run_dir: str | Path,
    *,
    teacher: str | Path,
    files: Sequence[str | Path],
    runtime: Runtime | None = None,
    observer: Observer | None = None,
) -> tuple[RunResult, list[tuple[str, str]]]:
    """Train `recipe`'s student on `files`, with a teacher's scores as targets.

    teacher: a YAMNet .tflite file or anything `asttag.hub.load_model` loads. The recordings
    are cut into the student's windows under run_dir/windows and scored once by the teacher into
    run_dir/windows/manifest.jsonl, the data the recipe trains and validates on; an asttag-model
    teacher also scores every training batch as augmented (ModelTeacher). Returns the run and
    the recordings that could not be used.
    """
    from .training import Runtime, train

    runtime = runtime or Runtime()
    run = Path(run_dir)
    if (run / TEACHER_FILE).exists():
        raise DistillError(f"{run} already holds a distillation: resume it or choose another folder")
    hook = _model_teacher(teacher, recipe)  # before the slow part: a mismatch fails at once
    window_dir = run / WINDOW_DIR
    windows, failed = cut_recordings(files, window_dir, window_seconds=recipe.target_length / 100)
    labels, scores = teacher_scores(_frame_teacher(teacher) if hook is None else hook.teacher, windows,
                                    device=runtime.device)
    manifest = write_soft_manifest((SoftTarget(p, s) for (p, _), s in zip(windows, scores)),
                                   window_dir / MANIFEST_FILE, labels=labels)
    recipe = recipe.replace(dataset="manifest", data_dir=str(manifest),
                            data={**recipe.data, "label_file": str(window_dir / LABEL_FILE)})
    atomic_write_text(run / TEACHER_FILE, json.dumps({"teacher": str(teacher)}) + "\n")
    return train(recipe, run, runtime=runtime, observer=observer, targets=hook), failed


def resume_distill(
    run_dir: str | Path, *, runtime: Runtime | None = None, observer: Observer | None = None,
) -> RunResult:
    """Go on with a distillation run after its last completed epoch, with the same teacher."""
    from .recipes import load_recipe
    from .training import Runtime, resume

    run = Path(run_dir)
    if not (run / TEACHER_FILE).exists() or not (run / RECIPE_FILE).exists():
        raise DistillError(f"{run}: not a distillation run directory (no {TEACHER_FILE} or {RECIPE_FILE})")
    teacher = json.loads((run / TEACHER_FILE).read_text("utf-8"))["teacher"]
    hook = _model_teacher(teacher, load_recipe(run / RECIPE_FILE))
    return resume(run, runtime=runtime or Runtime(), observer=observer, targets=hook)


def _frame_teacher(path: str | Path) -> FrameTeacher:
    from .yamnet import YamnetTeacher

    return YamnetTeacher.from_file(path)


def _model_teacher(teacher: str | Path, recipe: Recipe) -> ModelTeacher | None:
    """The per-batch hook for an asttag-model teacher (the student learns all its classes);
    None for YAMNet, whose targets are in the manifest."""
    if is_yamnet_file(teacher):
        return None
    from .features import FeatureConfig
    from .hub import load_model

    model = load_model(str(teacher), device="cpu")
    features = FeatureConfig(num_mel_bins=recipe.num_mel_bins, target_length=recipe.target_length,
                             mean=recipe.norm_mean, std=recipe.norm_std)
    return ModelTeacher(model, features=features, labels=model.labels)
