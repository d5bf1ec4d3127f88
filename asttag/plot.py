"""Pictures (PNG): a tagged recording, a training run's curves, an evaluation's classes.

matplotlib is an optional dependency (`pip install 'asttag[plot]'`), imported only when a picture
is drawn. Figures are drawn on matplotlib's Agg canvas without pyplot, so drawing never opens a
window or changes the caller's pyplot backend.

A recording's picture stays readable and its memory bounded at any length: the spectrogram is
reduced to at most one column per pixel while the audio streams through in blocks (the mean
log-mel of the frames in each column), and the window scores the tagger already computed are
reduced to the same columns (the highest score of the windows that cover each column).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import atomic_path
from .rundir import CROSS_VALIDATION_FILE, METRICS_FILE, RunDirectory, fold_directory

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .evaluation import Predictions
    from .features import FeatureConfig
    from .tagger import Tagger, TagResult

__all__ = [
    "DEFAULT_TOP_LABELS",
    "DEFAULT_WIDTH",
    "INSTALL_HINT",
    "RUN_PICTURE",
    "PlotError",
    "RunMetrics",
    "draw_evaluation",
    "draw_recording",
    "draw_run",
    "event_columns",
    "is_training_run",
    "picture_paths",
    "read_run_metrics",
    "require_matplotlib",
    "score_columns",
    "spectrogram_columns",
]

INSTALL_HINT = "pictures need matplotlib: pip install 'asttag[plot]'"
DEFAULT_TOP_LABELS = 10
DEFAULT_WIDTH = 1600  # pixels; also the most columns a recording's picture is reduced to
_DPI = 100
_MAX_ROWS = 40  # label rows of a recording's picture
_MAX_BARS = 60  # classes of an evaluation's picture (the best and the worst half each)


class PlotError(Exception):
    """A picture that cannot be drawn (matplotlib missing, nothing to draw): the message says why."""


def require_matplotlib() -> None:
    """Raise PlotError saying what to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(INSTALL_HINT) from None


def _figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


# --------------------------------------------------------------------------- where pictures go

RUN_PICTURE = "metrics.png"  # a training run's picture, inside its directory


def is_training_run(path: str | Path) -> bool:
    """A directory holding a training run's metrics or a cross-validation."""
    path = Path(path)
    return path.is_dir() and any((path / name).exists() for name in (METRICS_FILE, CROSS_VALIDATION_FILE))


def picture_paths(sources: Sequence[str | Path], *, directory: str | Path | None = None) -> dict[Path, Path]:
    """Where the picture of each input goes: beside it with the suffix .png (a training run's
    inside it as metrics.png), or in `directory` under the input's name. Raises ValueError when
    two inputs would be drawn to one picture."""
    targets: dict[Path, Path] = {}
    drawn_from: dict[Path, Path] = {}
    for source in map(Path, sources):
        run = is_training_run(source)
        if directory is not None:
            target = Path(directory) / (f"{source.name}.png" if run else Path(source.name).with_suffix(".png"))
        else:
            target = source / RUN_PICTURE if run else source.with_suffix(".png")
        if target in drawn_from and drawn_from[target] != source:
            raise ValueError(f"{drawn_from[target]} and {source} would both be drawn to {target}")
        drawn_from[target], targets[source] = source, target
    return targets


# --------------------------------------------------------------------------- recordings


def spectrogram_columns(path: str | Path, features: FeatureConfig, *, duration: float,
                        columns: int = DEFAULT_WIDTH, block_seconds: float = 60.0) -> np.ndarray:
    """The log-mel spectrogram of a file as (mel bins, n) with n <= `columns`: each column the
    mean of its frames, computed while the file streams through in blocks, so memory depends
    on `columns` and `block_seconds`, not on the file's length. `duration` is the file's length
    in seconds (a tag result's), which fixes the columns before the audio is read."""
    from .audio import iter_blocks
    from .features import BlockFbank

    total = max(1, features.num_frames(round(duration * features.sample_rate)))
    n = max(1, min(columns, total))
    sums = np.zeros((n, features.num_mel_bins))
    counts = np.zeros(n)
    first = 0  # absolute index of the block's first frame
    blocks = iter_blocks(path, sample_rate=features.sample_rate, block_seconds=block_seconds)
    stream = BlockFbank(features)
    for frames in map(stream.push, blocks):
        if not len(frames):  # a block shorter than the rest of a frame
            continue
        column = np.minimum((first + np.arange(len(frames))) * n // total, n - 1)
        # Columns rise through a block: sum each run of equal columns at once.
        runs = np.flatnonzero(np.r_[True, column[1:] != column[:-1]])
        np.add.at(sums, column[runs], np.add.reduceat(frames, runs, axis=0))
        np.add.at(counts, column[runs], np.diff(np.r_[runs, len(frames)]))
        first += len(frames)
    filled = counts > 0
    out = np.full_like(sums, np.nan)
    out[filled] = sums[filled] / counts[filled, None]
    return out.T


def score_columns(scores: np.ndarray, starts: np.ndarray, ends: np.ndarray, *,
                  duration: float, columns: int) -> np.ndarray:
    """Window scores (windows, labels) as (labels, columns) over [0, duration]: each column the
    highest score of the windows whose span covers part of it (NaN where none does)."""
    out = np.full((scores.shape[1], columns), np.nan)
    scale = columns / max(duration, 1e-9)
    for score, start, end in zip(scores, starts, ends):
        a = min(int(start * scale), columns - 1)
        b = max(a + 1, min(math.ceil(end * scale), columns))
        out[:, a:b] = np.fmax(out[:, a:b], score[:, None])
    return out


def _label_rows(tagger: Tagger, result: TagResult, top: int) -> list[int]:
    """The top labels by clip score (within the tagger's label filter), then any label with an
    event that is not among them, best first; at most _MAX_ROWS."""
    candidates = tagger.label_indices
    ranked = candidates[np.argsort(-result.clip_scores[candidates], kind="stable")]
    with_events = {e.index for e in result.events}
    rows = list(ranked[:top]) + [i for i in ranked[top:] if i in with_events]
    return [int(i) for i in rows[:_MAX_ROWS]]


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (np.exp(mel / 1127.0) - 1.0)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(hz / 700.0)


def _frequency_ticks(axes: Axes, features: FeatureConfig) -> None:
    """Label the mel-bin axis in Hz (Kaldi's mel scale: 20 Hz to Nyquist, bin centres)."""
    bins = features.num_mel_bins
    low, high = _hz_to_mel(np.array([20.0, features.sample_rate / 2]))
    candidates = np.array([100, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000], dtype=float)
    hz = candidates[(candidates > 20) & (candidates < features.sample_rate / 2)]
    # Bin i's centre is at mel low + (i + 1) * (high - low) / (bins + 1); pixel i spans [i, i+1).
    position = (_hz_to_mel(hz) - low) / (high - low) * (bins + 1) - 0.5
    axes.set_yticks(position, [f"{h / 1000:g}k" if h >= 1000 else f"{h:g}" for h in hz])
    axes.set_ylabel("Hz")


def _clock(seconds: float, duration: float) -> str:
    if duration < 60:
        return f"{seconds:g}"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if duration >= 3600 else f"{rest // 60}:{rest % 60:02d}"


def event_columns(result: TagResult, rows: Sequence[int], *, columns: int) -> np.ndarray:
    """The events of the labels `rows` as (rows, columns) over the recording: 1 where an event
    covers part of a column, NaN elsewhere (an event shorter than a column still shows)."""
    out = np.full((len(rows), columns), np.nan)
    for row, index in enumerate(rows):
        spans = np.array([(e.start, e.end) for e in result.events if e.index == index]).reshape(-1, 2)
        if len(spans):
            out[row] = score_columns(np.ones((len(spans), 1)), spans[:, 0], spans[:, 1],
                                     duration=result.duration, columns=columns)[0]
    return out


def _event_colours() -> Any:
    from matplotlib.colors import ListedColormap

    return ListedColormap(["tab:orange"]).with_extremes(bad=(0, 0, 0, 0))


# Tick spacings a clock reads easily, in seconds.
_CLOCK_STEPS = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _clock_step(duration: float, ticks: int = 8) -> float:
    """The smallest easy spacing that puts at most `ticks` ticks on `duration` seconds."""
    return next((step for step in _CLOCK_STEPS if duration / step <= ticks), _CLOCK_STEPS[-1])


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def draw_recording(tagger: Tagger, result: TagResult, path: str | Path, *,
                   top: int = DEFAULT_TOP_LABELS, width: int = DEFAULT_WIDTH) -> Path:
    """Draw one tagged recording as a PNG at `path`: its log-mel spectrogram on top, the scores
    of its `top` labels over time below (and of every label with an event), and its events as
    bars, all on one time axis. The scores and events are the tagger's (`result`); the
    spectrogram is computed from the file again with the tagger's feature settings, reduced to
    at most `width` columns as it streams."""
    require_matplotlib()
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    features, duration = tagger.features, result.duration
    spectrogram = spectrogram_columns(result.path, features, duration=duration, columns=width,
                                      block_seconds=tagger.block_seconds)
    rows = _label_rows(tagger, result, top)
    heat = score_columns(result.scores[:, rows], result.starts, result.ends, duration=duration,
                         columns=spectrogram.shape[1])
    names = [tagger.label_set.names[i] for i in rows]

    row_inches = 0.22
    heights = [2.6, 0.4 + row_inches * len(rows), 0.4 + row_inches * len(rows)]
    figure = _figure(width, (sum(heights) + 1.2) * _DPI)
    grid = figure.add_gridspec(3, 2, height_ratios=heights, width_ratios=[60, 1], hspace=0.12,
                               wspace=0.02, left=0.16, right=0.95, top=0.93, bottom=0.6 / (sum(heights) + 1.2))
    spec_axes = figure.add_subplot(grid[0, 0])
    heat_axes = figure.add_subplot(grid[1, 0], sharex=spec_axes)
    event_axes = figure.add_subplot(grid[2, 0], sharex=spec_axes, sharey=heat_axes)

    finite = spectrogram[np.isfinite(spectrogram)]
    low, high = np.percentile(finite, [2, 99.8]) if finite.size else (0.0, 1.0)
    image = spec_axes.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma",
                             extent=(0, duration, -0.5, features.num_mel_bins - 0.5),
                             vmin=low, vmax=max(high, low + 1e-6), interpolation="nearest")
    figure.colorbar(image, cax=figure.add_subplot(grid[0, 1]), label="log-mel")
    _frequency_ticks(spec_axes, features)

    image = heat_axes.imshow(heat, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                             extent=(0, duration, len(rows) - 0.5, -0.5), interpolation="nearest")
    figure.colorbar(image, cax=figure.add_subplot(grid[1, 1]), label="score")
    heat_axes.set_yticks(range(len(rows)), names, fontsize=8)

    covered = event_columns(result, rows, columns=spectrogram.shape[1])
    event_axes.imshow(covered, aspect="auto", cmap=_event_colours(), vmin=0, vmax=1,
                      extent=(0, duration, len(rows) - 0.5, -0.5), interpolation="nearest")
    for boundary in np.arange(len(rows) - 1) + 0.5:
        event_axes.axhline(boundary, color="0.9", lw=0.8)
    event_axes.set_xlim(0, duration)
    event_axes.tick_params(axis="y", labelsize=8)
    event_axes.set_ylabel(f"events (>= {tagger.event_threshold:g})", fontsize=8)
    for axes in (spec_axes, heat_axes):
        axes.tick_params(labelbottom=False)
    unit = "s" if duration < 60 else ("h:mm:ss" if duration >= 3600 else "m:ss")
    event_axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _clock(x, duration)))
    if duration >= 60:
        event_axes.xaxis.set_major_locator(MultipleLocator(_clock_step(duration)))
    event_axes.set_xlabel(f"time ({unit})")

    events = len(result.events)
    shown = sum(e.index in rows for e in result.events)
    title = (f"{Path(result.path).name}: {_clock(duration, duration)} {unit}, "
             f"{_count(len(result.scores), 'window')}, {_count(events, 'event')}")
    if shown < events:
        title += f" ({events - shown} of labels past the {_MAX_ROWS} rows not shown)"
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


# --------------------------------------------------------------------------- training runs


@dataclass(frozen=True)
class RunMetrics:
    """The per-epoch records of one training run (one line each), named for the legend."""

    name: str
    records: list[dict]


def read_run_metrics(run_dir: str | Path) -> list[RunMetrics]:
    """The per-epoch records of a training run, or of each fold of a cross-validation."""
    run_dir = Path(run_dir)
    if (run_dir / CROSS_VALIDATION_FILE).exists():
        summary = json.loads((run_dir / CROSS_VALIDATION_FILE).read_text("utf-8"))
        folds = [fold_directory(run_dir, fold) for fold in summary.get("folds", [])]
    else:
        folds = [run_dir]
    runs = [RunMetrics(fold.name, RunDirectory(fold).read_metrics()) for fold in folds]
    runs = [run for run in runs if run.records]
    if not runs:
        raise PlotError(f"{run_dir}: no training epochs to draw (no {METRICS_FILE} with records)")
    return runs


def _series(records: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
    epochs, values = zip(*points) if points else ((), ())
    return np.array(epochs, dtype=float), np.array(values, dtype=float)


def _mean_over_runs(runs: Sequence[RunMetrics], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Per epoch, the mean over the runs that have a value there; only epochs all runs have."""
    per_run = [dict(zip(*_series(run.records, key))) for run in runs]
    shared = sorted(set.intersection(*(set(values) for values in per_run))) if per_run else []
    return np.array(shared), np.array([np.mean([values[e] for values in per_run]) for e in shared])


_PANELS = (("loss", ("train_loss", "valid_loss")), ("score", ("accuracy", "mAP")), ("learning rate", ("lr",)))


def draw_run(run_dir: str | Path, path: str | Path, *, width: int = 1200) -> Path:
    """Draw a training run's loss, accuracy and mAP, and learning rate per epoch (from its
    metrics.jsonl) as a PNG at `path`. A cross-validation draws each fold as a thin line and
    their mean (over the epochs every fold reached) as a thick one."""
    runs = read_run_metrics(run_dir)
    figure = _figure(width, 0.75 * width)
    from matplotlib.ticker import MaxNLocator

    panels = figure.subplots(len(_PANELS), 1, sharex=True)
    for axes, (title, keys) in zip(panels, _PANELS):
        for colour, key in zip(("tab:blue", "tab:orange"), keys):
            if not any(r.get(key) is not None for run in runs for r in run.records):
                continue
            if len(runs) == 1:
                axes.plot(*_series(runs[0].records, key), marker="o", ms=3, color=colour, label=key)
                continue
            for n, run in enumerate(runs):
                axes.plot(*_series(run.records, key), color=colour, alpha=0.35, lw=1,
                          label=f"{key}, each fold" if n == 0 else None)
            axes.plot(*_mean_over_runs(runs, key), color=colour, lw=2.5,
                      label=f"{key}, mean of {len(runs)} folds")
        axes.set_ylabel(title)
        axes.grid(color="0.9")
        if axes.lines:
            axes.legend(fontsize=8)
        if title == "learning rate" and all(v > 0 for line in axes.lines for v in line.get_ydata()):
            axes.set_yscale("log")
    panels[-1].set_xlabel("epoch")
    panels[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(f"{Path(run_dir).name}: {len(runs)} folds" if len(runs) > 1 else Path(run_dir).name)
    return _save(figure, path)


# --------------------------------------------------------------------------- evaluations


def draw_evaluation(predictions: Predictions, path: str | Path, *, width: int = 1000,
                    limit: int = _MAX_BARS) -> Path:
    """Draw per-class average precision of saved predictions (`evaluation.load_predictions`) as
    a sorted bar chart, best on top, as a PNG at `path`. With more than `limit` scored classes,
    the best and the worst `limit // 2` are drawn and the title says how many are left out;
    classes without a positive (or negative) clip are left out and counted in the title."""
    metrics = predictions.metrics()
    scored = np.flatnonzero(np.isfinite(metrics.per_class_ap))
    if not scored.size:
        raise PlotError("no class has both positive and negative clips: no average precision to draw")
    order = scored[np.argsort(-metrics.per_class_ap[scored], kind="stable")]
    hidden = 0
    if len(order) > limit:
        hidden = len(order) - 2 * (limit // 2)
        order = np.r_[order[: limit // 2], order[len(order) - limit // 2 :]]
    height = 120 + 16 * len(order)
    figure = _figure(width, height)
    axes = figure.add_axes((0.3, 60 / height, 0.65, 1 - 120 / height))
    values = metrics.per_class_ap[order]
    axes.barh(range(len(order)), values, color="tab:blue")
    axes.set_yticks(range(len(order)), [metrics.class_name(int(i)) for i in order], fontsize=8)
    axes.set_ylim(len(order) - 0.5, -0.5)
    axes.set_xlim(0, 1)
    axes.set_xlabel("average precision")
    axes.grid(axis="x", color="0.9")
    notes = []
    if hidden:
        axes.axhline(limit // 2 - 0.5, color="0.3", ls="--", lw=1)
        notes.append(f"{hidden} classes between the best and the worst {limit // 2} not shown")
    if metrics.excluded:
        notes.append(f"{len(metrics.excluded)} without positive or negative clips left out")
    title = f"AP per class: mAP {metrics.mAP:.3f} over {len(scored)} classes, {metrics.n_examples} clips"
    axes.set_title("\n".join([title, "; ".join(notes)] if notes else [title]), fontsize=9)
    return _save(figure, path)
