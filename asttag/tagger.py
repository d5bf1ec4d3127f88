"""Sliding-window tagging of recordings of any length.

A file is read in blocks (audio.iter_blocks), the log-mel frames of each block are computed once,
and windows of the model's input length are cut from them in the frame domain every `hop`. A
window holds the frames wholly inside its own audio, so tagging a long recording gives, window for
window, what tagging each window cut out as its own file gives. Windows from many files are
batched together, and each window's scores are independent of its neighbours in the batch, so
reruns, resumed runs and sharded runs agree to the bit (int8 excepted: dynamic quantisation
scales by the whole batch). On a CPU the model computes a window the same in a batch of any size
(AST.classify, and ONNX Runtime; the tests check both), so the last batch runs with the windows
it has; on other devices, whose kernels may depend on the batch shape, it is padded to the full
shape.

The front end (decoding, resampling, the fbank, cutting windows) is numpy; an engine runs the
model on numpy batches: `TorchEngine` for a torch model, used only through `features`,
`labels`, `predict`, `to` and `eval` (the `model.TaggingModel` protocol, so an ensemble bundle
tags like a single model), or a `runtime.OnnxModel` itself, which needs no torch at all.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .audio import AudioError, iter_blocks
from .choices import AGGREGATES, DEFAULT_DEVICE, PADS, TAG_PRECISIONS
from .features import BlockFbank, FeatureConfig, normalize, window_features
from .labels import LabelSet
from .runtime import OnnxModel
from .thresholds import Threshold, recommended

if TYPE_CHECKING:
    import torch

    from .model import TaggingModel

__all__ = [
    "Tagger",
    "TagResult",
    "TagFailure",
    "Tag",
    "Event",
    "WindowPlan",
    "default_batch_size",
    "default_aggregate",
    "aggregate_windows",
]

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
_CPU_BATCH_VALUES = 8 * 1024 * 128
_CPU_BATCH_RANGE = (8, 64)
_CUDA_BATCH = 32


def default_batch_size(features: FeatureConfig, device_type: str) -> int:
    """Windows per forward pass when the caller names none: 32 on CUDA; on a CPU, 8 windows of
    AST's full 10.24 s x 128-bin input and more of smaller inputs (up to 64: 64 for the default
    model's 0.96 s x 64 bins). A forward pass over 8 small windows is too short to pay for
    starting and stopping the CPU thread pool: beside another busy process, the default model
    tagged a 10-minute file 1.6-2.5x faster in batches of 32 or 64 than of 8 (alone, the same
    within 7%; benchmarks/bench_batch.py)."""
    if device_type != "cpu":
        return _CUDA_BATCH
    low, high = _CPU_BATCH_RANGE
    return max(low, min(high, _CPU_BATCH_VALUES // (features.target_length * features.num_mel_bins)))


def default_aggregate(labels: LabelSet) -> str:
    """How window scores become clip scores unless told: the max for multi-label models (a
    sound anywhere tags the clip), the mean for single-label ones."""
    return "max" if labels.multi_label else "mean"


def aggregate_windows(scores: np.ndarray, how: str) -> np.ndarray:
    """Clip scores (classes,) of window scores (windows, classes), by `how` (max or mean)."""
    return scores.max(axis=0) if how == "max" else scores.mean(axis=0)


@dataclass(frozen=True)
class Tag:
    """One label's score over a time span (the whole file for clip tags, a window for segments)."""

    start: float
    end: float
    label: str
    label_id: str
    index: int
    score: float


@dataclass(frozen=True)
class Event:
    """Consecutive windows over the threshold for one label, merged."""

    start: float
    end: float
    label: str
    label_id: str
    index: int
    peak: float
    mean: float


@dataclass
class TagResult:
    """What tagging one file gives: per-window scores and the tags, segments and events."""

    path: str
    duration: float
    sample_rate: int  # the rate the model analysed the audio at (its band ends at half of it)
    starts: np.ndarray  # (windows,) seconds
    ends: np.ndarray  # (windows,) seconds, the last one clipped to the duration
    scores: np.ndarray  # (windows, classes) probabilities
    clip_scores: np.ndarray  # (classes,) aggregated over windows
    tags: list[Tag]
    segments: list[Tag]
    events: list[Event]


@dataclass(frozen=True)
class TagFailure:
    """A file that could not be tagged, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class WindowPlan:
    """Where windows fall, counted in frame shifts (10 ms).

    Positions are integers on this grid; seconds exist only for output (`seconds`), so whether
    two windows touch is decided exactly, however long the recording.
    """

    target_length: int  # the model's input, in frames
    window_frames: int  # frame shifts one window spans
    hop_frames: int
    frames_per_window: int  # analysis frames wholly inside one window's audio
    frame_shift_ms: float

    @classmethod
    def build(cls, features: FeatureConfig, *, window: float | None = None,
              hop: float | None = None) -> WindowPlan:
        """Window and hop in seconds (default: the model's input length, no overlap)."""
        frame_seconds = features.frame_shift_ms / 1000
        window_frames = _frames(window, frame_seconds, "window") if window else features.target_length
        if window_frames > features.target_length:
            raise ValueError(
                f"window {window} s is longer than the model's input "
                f"({features.window_seconds:.2f} s): it would be cut"
            )
        frames_per_window = features.num_frames(window_frames * features.frame_shift_samples)
        if frames_per_window < 1:
            raise ValueError(f"window {window} s is shorter than one analysis frame")
        hop_frames = _frames(hop, frame_seconds, "hop") if hop else window_frames
        return cls(features.target_length, window_frames, hop_frames, frames_per_window,
                   features.frame_shift_ms)

    @property
    def frame_seconds(self) -> float:
        return self.frame_shift_ms / 1000

    @property
    def window_seconds(self) -> float:
        return float(self.seconds(self.window_frames))

    @property
    def hop_seconds(self) -> float:
        return float(self.seconds(self.hop_frames))

    @property
    def unanalysed_fraction(self) -> float:
        """The share of a recording no window sees: the gap of a hop longer than the window."""
        return max(0, self.hop_frames - self.window_frames) / self.hop_frames

    def seconds(self, frames: Any) -> Any:
        """Frame positions in seconds (one rounding: the nearest double to the exact time)."""
        return frames * self.frame_shift_ms / 1000

    def count(self, total_frames: int) -> int:
        """Windows needed so that the last one reaches the last frame."""
        needed = 1 + math.ceil(max(0, total_frames - self.frames_per_window) / self.hop_frames)
        # A hop longer than the window leaves gaps: no window may start past the end.
        return min(needed, max(1, math.ceil(total_frames / self.hop_frames)))

    def frame_spans(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """First and one-past-last frame shift of each of `count` windows (int64)."""
        starts = np.arange(count, dtype=np.int64) * self.hop_frames
        return starts, starts + self.window_frames

    def spans(self, count: int, duration: float) -> tuple[np.ndarray, np.ndarray]:
        """Start and end seconds of each window, the ends clipped to `duration`."""
        starts, ends = self.frame_spans(count)
        return self.seconds(starts), np.minimum(self.seconds(ends), duration)


def _frames(seconds: float, frame_seconds: float, what: str) -> int:
    frames = seconds / frame_seconds
    if seconds <= 0 or abs(frames - round(frames)) > 1e-6:
        raise ValueError(f"{what} {seconds} s must be a positive multiple of {frame_seconds * 1000:g} ms")
    return round(frames)


class _WindowCutter:
    """One file's audio blocks in, model inputs out; each frame computed once."""

    def __init__(self, plan: WindowPlan, features: FeatureConfig, *, pad: str) -> None:
        self.plan, self.features, self.pad = plan, features, pad
        self._fbank = BlockFbank(features)
        self._frames = np.zeros((0, features.num_mel_bins), dtype=np.float32)  # frame `_first` on
        self._first = 0
        self.emitted = 0  # windows cut so far

    @property
    def total_frames(self) -> int:
        return self._first + self._frames.shape[0]

    def push(self, block: np.ndarray) -> np.ndarray:
        """Windows whose frames are all here, (k, target_length, mel bins)."""
        self._frames = np.concatenate([self._frames, self._fbank.push(block)])
        return self._cut(final=False)

    def finish(self) -> np.ndarray:
        """The remaining windows, the last one padded."""
        return self._cut(final=True)

    def _cut(self, *, final: bool) -> np.ndarray:
        plan, total = self.plan, self.total_frames
        if final:
            stop = plan.count(total)
        elif total >= plan.frames_per_window:  # the windows whose frames are all here
            stop = (total - plan.frames_per_window) // plan.hop_frames + 1
        else:
            stop = 0
        starts = [i * plan.hop_frames for i in range(self.emitted, stop)]
        self.emitted = max(self.emitted, stop)
        windows = self._assemble(starts, total)
        drop = min(self.emitted * plan.hop_frames, total) - self._first
        self._frames, self._first = self._frames[drop:], self._first + drop
        return windows

    def _assemble(self, starts: list[int], total: int) -> np.ndarray:
        full = self.plan.frames_per_window
        offsets = [s - self._first for s in starts]
        lengths = [min(full, total - s) for s in starts]
        out = window_features(self._frames, offsets, lengths, self.features)
        if self.pad == "repeat":
            for i, (offset, length) in enumerate(zip(offsets, lengths)):
                if length < full:  # a short clip or the last partial window: tile its frames
                    frames = self._frames[offset : offset + length]
                    tiled = np.tile(frames, (math.ceil(self.plan.target_length / length), 1))
                    out[i] = normalize(tiled[: self.plan.target_length], self.features)
        return out


# Messages from the producer of windows (this thread or worker threads) to the scorer.
@dataclass
class _Windows:
    order: int
    windows: np.ndarray
    ends: list[float]  # seconds of audio each window reaches, for progress


@dataclass
class _Done:
    order: int
    count: int
    duration: float


@dataclass
class _Failed:
    order: int
    reason: str


_Item = _Windows | _Done | _Failed


@dataclass
class _Windowing:
    """Decode and cut windows for a list of files, or for every `step`-th from `first` on."""

    paths: list[str]
    plan: WindowPlan
    features: FeatureConfig
    pad: str
    block_seconds: float

    def files(self, first: int = 0, step: int = 1) -> Iterator[_Item]:
        for order in range(first, len(self.paths), step):
            yield from self._file(order, self.paths[order])

    def _file(self, order: int, path: str) -> Iterator[_Item]:
        rate = self.features.sample_rate
        cutter = _WindowCutter(self.plan, self.features, pad=self.pad)
        samples = 0
        try:
            for block in iter_blocks(path, sample_rate=rate, block_seconds=self.block_seconds):
                samples += block.size
                yield from self._emit(order, cutter, cutter.push(block), samples / rate)
            if cutter.total_frames == 0:
                raise AudioError(path, f"too short: {samples / rate * 1000:.1f} ms of audio, less "
                                       f"than one {self.features.frame_length_ms:g} ms analysis frame")
            yield from self._emit(order, cutter, cutter.finish(), samples / rate)
        except AudioError as e:
            yield _Failed(order, e.reason)
            return
        yield _Done(order, cutter.emitted, samples / rate)

    def _emit(self, order: int, cutter: _WindowCutter, windows: np.ndarray,
              decoded: float) -> Iterator[_Windows]:
        if len(windows):
            first = cutter.emitted - len(windows)
            plan = self.plan
            ends = [min(float(plan.seconds((first + i) * plan.hop_frames + plan.window_frames)),
                        decoded) for i in range(len(windows))]
            yield _Windows(order, windows, ends)


# Items a worker thread may get ahead of the model: bounds memory (a few blocks of windows).
_QUEUE_ITEMS = 4


def _in_threads(windowing: _Windowing, workers: int) -> Iterator[_Item]:
    """`windowing`'s items produced by `workers` threads (worker i takes every workers-th file
    from the i-th), in the order they come. Decoding and the fbank run in numpy and libsndfile,
    which release the GIL, so threads overlap them with the model. An error in a worker is
    raised here; leaving early stops the workers."""
    items: queue.Queue = queue.Queue(maxsize=_QUEUE_ITEMS * workers)
    stop = threading.Event()
    finished = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(first: int) -> None:
        try:
            for item in windowing.files(first, workers):
                if not put(item):
                    return
        except BaseException as e:  # noqa: BLE001 (handed to the consumer, which raises it)
            put(e)
        put(finished)

    threads = [threading.Thread(target=work, args=(i,), daemon=True, name=f"asttag-decode-{i}")
               for i in range(workers)]
    for thread in threads:
        thread.start()
    try:
        running = workers
        while running:
            item = items.get()
            if item is finished:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()


@dataclass
class _Pending:
    """A file whose windows are on their way through the model."""

    path: str
    scores: list[np.ndarray] = field(default_factory=list)
    count: int | None = None
    duration: float = 0.0
    reported: float = 0.0  # seconds of audio already reported to the progress callback


class Tagger:
    """Tag files with a model: sliding windows, batching, aggregation, segments and events.

    A torch model is moved to `device` and runs in `precision` (bf16/fp16: autocast; int8:
    dynamic quantisation of the linear layers, CPU only); a `runtime.OnnxModel` runs on the CPU
    in fp32 and refuses anything else. `window` and `hop` are in seconds, multiples of
    10 ms; the window defaults to the model's input length, the hop to the window. A hop longer
    than the window logs a warning with the share of audio no window sees
    (`plan.unanalysed_fraction`). `pad` fills
    the last partial window and clips shorter than a window: "zero" (as the models were
    trained) or "repeat" (tile the audio's frames). Clip tags aggregate window scores by
    `aggregate` (default: max for multi-label models, mean for single-label ones), keep `labels`
    only (names, ids or indices), those at or over `threshold`, and the `top_k` best (default 5
    without a threshold, all over it with one). Events use `threshold`, by default the one the
    model's checkpoint recommends (`thresholds.recommended`: 0.5 where it holds none).
    `batch_size` windows go through the model at a time (default: `default_batch_size`).
    `workers` > 0 decodes and computes features in that many threads while the model runs.
    """

    def __init__(
        self,
        model: TaggingModel | OnnxModel,
        *,
        device: str | torch.device = DEFAULT_DEVICE,
        precision: str = "fp32",
        batch_size: int | None = None,
        window: float | None = None,
        hop: float | None = None,
        pad: str = "zero",
        aggregate: str | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
        labels: Iterable[str | int] | None = None,
        workers: int = 0,
        block_seconds: float = 10.0,
    ) -> None:
        _check_choice("precision", precision, TAG_PRECISIONS)
        _check_choice("pad", pad, PADS)
        if aggregate is not None:
            _check_choice("aggregate", aggregate, AGGREGATES)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, got {workers}")
        if threshold is not None and not 0 <= threshold <= 1:
            raise ValueError(f"threshold {threshold} is not between 0 and 1")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top k must be at least 1, got {top_k}")
        self.features: FeatureConfig = model.features
        self.label_set = model.labels
        self.plan = WindowPlan.build(self.features, window=window, hop=hop)
        if self.plan.unanalysed_fraction:
            log.warning(
                "hop %g s is longer than the %g s window: %.1f%% of the audio (%g s of every "
                "hop) is never analysed", self.plan.hop_seconds, self.plan.window_seconds,
                100 * self.plan.unanalysed_fraction,
                self.plan.seconds(self.plan.hop_frames - self.plan.window_frames),
            )
        self.precision = precision
        self.engine = self._engine(model, device=device, precision=precision)
        self.batch_size = batch_size or default_batch_size(self.features, self.engine.device_type)
        self.pad = pad
        self.aggregate = aggregate or default_aggregate(self.label_set)
        self.threshold = threshold
        self.top_k = top_k if top_k is not None else (None if threshold is not None else DEFAULT_TOP_K)
        # Without a threshold, events use the one the model's checkpoint recommends (0.5 if none).
        self.event_threshold_source = (
            recommended(model) if threshold is None else Threshold(threshold, "given")
        )
        self.event_threshold = self.event_threshold_source.value
        self.label_indices = _resolve_labels(self.label_set, labels)
        self.workers = workers
        self.block_seconds = block_seconds

    def options(self) -> dict:
        """The settings that change results (what a resume journal must match)."""
        return {
            "window_frames": self.plan.window_frames,
            "hop_frames": self.plan.hop_frames,
            "pad": self.pad,
            "aggregate": self.aggregate,
            "top_k": self.top_k,
            "threshold": self.threshold,
            "event_threshold": self.event_threshold,
            "labels": self.label_indices.tolist(),
            "precision": self.precision,
            # Batch shape, device and runtime choose the kernels, which round differently.
            "batch_size": self.batch_size,
            "device": self.engine.device_type,
            "runtime": self.engine.name,
        }

    def tag(self, path: str | Path) -> TagResult:
        """Tag one file; raises `AudioError` when it cannot be used."""
        (result,) = self.tag_many([path])
        if isinstance(result, TagFailure):
            raise AudioError(result.path, result.reason)
        return result

    def tag_many(
        self, paths: Iterable[str | Path], *, progress: Callable[[float], None] | None = None
    ) -> Iterator[TagResult | TagFailure]:
        """Tag files, yielding one result or failure per file, in the order given.

        `progress` is called with the seconds of audio each step has newly covered.
        """
        # numpy's OpenBLAS (the fbank's and the resampler's small products) keeps its threads
        # spinning after each call, on the cores the model's threads need: with one thread the
        # default model tagged a 10-minute file 1.3x as fast on 2 cores. The model's own BLAS
        # (torch's MKL, ONNX Runtime's MLAS) is not OpenBLAS and keeps its threads.
        with _openblas().limit(limits=1):
            yield from self._tag_many([str(p) for p in paths], progress)

    def _tag_many(self, names: list[str], progress: Callable[[float], None] | None
                  ) -> Iterator[TagResult | TagFailure]:
        pending: dict[int, _Pending] = {}
        rows: list[tuple[int, np.ndarray, float]] = []  # (file order, window, its end time)
        finished: dict[int, TagResult | TagFailure] = {}
        next_out = 0

        def score(batch: list[tuple[int, np.ndarray, float]]) -> None:
            probabilities = self._predict(np.stack([window for _, window, _ in batch]))
            for (order, _, end), p in zip(batch, probabilities):
                state = pending[order]
                state.scores.append(p)
                if progress and end > state.reported:
                    progress(end - state.reported)
                    state.reported = end
            for order in {order for order, _, _ in batch}:
                self._complete(order, pending, finished, progress)

        for item in self._items(names):
            state = pending.setdefault(item.order, _Pending(names[item.order]))
            if isinstance(item, _Windows):
                rows.extend((item.order, w, end) for w, end in zip(item.windows, item.ends))
                while len(rows) >= self.batch_size:
                    score(rows[: self.batch_size])
                    del rows[: self.batch_size]
            elif isinstance(item, _Done):
                state.count, state.duration = item.count, item.duration
                self._complete(item.order, pending, finished, progress)
            else:
                rows = [row for row in rows if row[0] != item.order]
                del pending[item.order]
                finished[item.order] = TagFailure(state.path, item.reason)
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1
        if rows:
            score(rows)
        while next_out in finished:
            yield finished.pop(next_out)
            next_out += 1

    def _engine(self, model: TaggingModel | OnnxModel, *, device: str | torch.device,
                precision: str) -> Engine:
        if isinstance(model, OnnxModel):
            return model.engine(str(device), precision)
        return TorchEngine(model, device=device, precision=precision)

    def _items(self, paths: list[str]) -> Iterator[_Item]:
        windowing = _Windowing(paths, self.plan, self.features, self.pad, self.block_seconds)
        if self.workers == 0 or not paths:
            return windowing.files()
        return _in_threads(windowing, min(self.workers, len(paths)))

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities (B, classes) float32 of a batch of model inputs as the tagger computes
        them: on its device, in its precision, with its runtime."""
        return self.engine.predict(windows)

    def _predict(self, windows: np.ndarray) -> list[np.ndarray]:
        n = windows.shape[0]
        if n < self.batch_size and self.engine.pads_batches:  # see the module's docstring
            windows = np.concatenate([windows, np.zeros((self.batch_size - n, *windows.shape[1:]),
                                                        dtype=windows.dtype)])
        return list(self.predict(windows)[:n])

    def _complete(self, order: int, pending: dict[int, _Pending],
                  finished: dict[int, TagResult | TagFailure],
                  progress: Callable[[float], None] | None) -> None:
        state = pending.get(order)
        if state is None or state.count is None or len(state.scores) < state.count:
            return
        del pending[order]
        if progress and state.duration > state.reported:
            progress(state.duration - state.reported)
        scores = np.stack(state.scores)
        bad = np.flatnonzero(~np.isfinite(scores).all(axis=1))
        if bad.size:  # NaN is no score: say where, instead of printing it as one
            start = self.plan.spans(len(scores), state.duration)[0][bad[0]]
            finished[order] = TagFailure(
                state.path, f"the model's scores are not numbers (NaN) in {bad.size} of "
                f"{len(scores)} window(s), the first at {start:.3f} s")
            return
        finished[order] = self._result(state.path, state.duration, scores)

    def _result(self, path: str, duration: float, scores: np.ndarray) -> TagResult:
        starts, ends = self.plan.spans(len(scores), duration)
        clip = aggregate_windows(scores, self.aggregate)
        segments = [
            tag for i in range(len(scores))
            for tag in self._select(scores[i], start=float(starts[i]), end=float(ends[i]))
        ]
        return TagResult(
            path=path, duration=duration, sample_rate=self.features.sample_rate,
            starts=starts, ends=ends, scores=scores,
            clip_scores=clip, tags=self._select(clip, start=0.0, end=duration),
            segments=segments, events=self._events(scores, duration),
        )

    def strongest(self, result: TagResult, *, clip: bool = False) -> Tag:
        """The best score among the selected labels, in a window (or of the clip): how low a
        threshold must be for anything to pass."""
        if clip:
            c = int(np.argmax(result.clip_scores[self.label_indices]))
            index, start, end = int(self.label_indices[c]), 0.0, result.duration
            score = result.clip_scores[index]
        else:
            chosen = result.scores[:, self.label_indices]
            w, k = np.unravel_index(int(np.argmax(chosen)), chosen.shape)
            index, start, end = int(self.label_indices[k]), result.starts[w], result.ends[w]
            score = chosen[w, k]
        return Tag(float(start), float(end), self.label_set.names[index], self.label_set.ids[index],
                   index, float(score))

    def _select(self, scores: np.ndarray, *, start: float, end: float) -> list[Tag]:
        candidates = self.label_indices
        values = scores[candidates]
        if self.threshold is not None:
            keep = values >= self.threshold
            candidates, values = candidates[keep], values[keep]
        order = np.argsort(-values, kind="stable")[: self.top_k]
        names, ids = self.label_set.names, self.label_set.ids
        return [
            Tag(start, end, names[c], ids[c], int(c), float(v))
            for c, v in zip(candidates[order], values[order])
        ]

    def _events(self, scores: np.ndarray, duration: float) -> list[Event]:
        first, last = self.plan.frame_spans(len(scores))
        events = []
        over_any = (scores[:, self.label_indices] >= self.event_threshold).any(axis=0)
        for index in self.label_indices[over_any]:  # most labels are under it everywhere
            over = scores[:, index] >= self.event_threshold
            i = 0
            while i < len(over):
                if not over[i]:
                    i += 1
                    continue
                j = i
                # Merge while the next window is over too and touches or overlaps this one,
                # decided on the frame grid (a hop longer than the window leaves gaps).
                while j + 1 < len(over) and over[j + 1] and first[j + 1] <= last[j]:
                    j += 1
                run = scores[i : j + 1, index]
                events.append(Event(
                    float(self.plan.seconds(first[i])), min(float(self.plan.seconds(last[j])), duration),
                    self.label_set.names[index], self.label_set.ids[index], int(index),
                    float(run.max()), float(run.mean()),
                ))
                i = j + 1
        return sorted(events, key=lambda e: (e.start, e.end, e.index))


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: choose from {', '.join(choices)}")


def _resolve_labels(label_set: Any, labels: Iterable[str | int] | None) -> np.ndarray:
    if labels is None:
        return np.arange(len(label_set))
    indices = []
    for key in labels:
        try:
            indices.append(label_set.index(key))
        except KeyError as e:
            raise ValueError(e.args[0]) from None
    if not indices:
        raise ValueError("the label filter is empty")
    return np.array(sorted(set(indices)))


@cache
def _openblas() -> Any:
    """numpy's OpenBLAS thread pool (threadpoolctl), found once: finding it inspects every
    loaded library, a few milliseconds that a loop of `tag` calls need not pay each time."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(internal_api="openblas")


class Engine(Protocol):
    """What runs the model for the tagger: numpy inputs in, probabilities out."""

    name: str  # "torch" or "onnxruntime"
    device_type: str  # "cpu" or "cuda"
    pads_batches: bool  # whether a short last batch is padded to the full shape

    def predict(self, windows: np.ndarray) -> np.ndarray: ...


class TorchEngine:
    """A torch model on its device, in its precision. On a CPU the model computes a window the
    same in a batch of any size (AST.classify); other devices' kernels may depend on the batch
    shape, so their batches are padded to the full one."""

    name = "torch"

    def __init__(self, model: TaggingModel, *, device: str | torch.device, precision: str) -> None:
        from .device import resolve_device

        self.device = resolve_device(device) if isinstance(device, str) else device
        self.device_type = self.device.type
        self.pads_batches = self.device_type != "cpu"
        self.precision = precision
        self.model = _prepare(model, device=self.device, precision=precision)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        import torch

        from .device import autocast

        # int8 models are quantised already (_prepare); the rest of their ops run in fp32.
        with torch.inference_mode(), autocast(self.device, "fp32" if self.precision == "int8"
                                              else self.precision):
            outputs = self.forward(torch.from_numpy(windows).to(self.device))
        return outputs.float().cpu().numpy()

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """The model's outputs for a batch on the device: its probabilities."""
        return self.model.predict(windows)


def _prepare(model: TaggingModel, *, device: torch.device, precision: str) -> TaggingModel:
    """The model on `device`, in eval mode; for int8 with its linear layers quantised.

    bf16 and fp16 keep fp32 weights and run under autocast (TorchEngine.predict): the matrix
    multiplies take the low precision, while the residual stream, normalisation and softmax
    stay in fp32. Casting the whole model instead was no faster on the CPU and further from
    fp32 (8 windows of AST base: top-5 overlap 4.75 against 4.88 of 5).
    """
    import torch

    from .device import refuse_fp16_off_cuda

    if precision == "int8":
        if device.type != "cpu":
            raise ValueError(f"int8 (dynamic quantisation) runs on the CPU only, not on {device}")
        from torch import nn

        with warnings.catch_warnings():
            # torch marks eager quantisation deprecated in favour of torchao; it still works and
            # needs no extra dependency.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            return torch.ao.quantization.quantize_dynamic(
                model.to("cpu").eval(), {nn.Linear}, dtype=torch.qint8
            )
    refuse_fp16_off_cuda(precision, device)
    return model.to(device=device).eval()
