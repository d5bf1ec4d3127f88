"""What the training and evaluation commands print: progress, run summaries, metric tables.

Shared by `train`, `finetune` and `distill` (a training run's progress and summary) and by
`evaluate` and `ensemble evaluate` (the data set read, the metrics reported).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from ..errors import parameter_of
from .app import EXIT_USAGE, console, fail, user_errors
from .options import OutputFormat, parse_data_options

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ..metrics import Metrics
    from ..recipes import Recipe
    from ..training import Runtime


# --------------------------------------------------------------------------- training runs


def runtime(device: str, workers: int, cache_dir: Path | None) -> Runtime:
    from ..training import Runtime

    return Runtime(device=device, workers=workers, cache=cache_dir)


def _is_main() -> bool:
    from ..runs import Shard

    return Shard.from_environment().rank == 0


def guarded(run, *, quiet: bool):
    """Run the engine with a progress observer; the library's errors end the command cleanly."""
    from ..pretrained import PretrainedError
    from ..training import TrainingError

    observer = TrainingProgress(enabled=not quiet and _is_main())
    try:
        return run(observer)
    except (TrainingError, PretrainedError) + user_errors() as e:
        hint = _TRAINING_HINTS.get(parameter_of(e) or "")
        fail(f"{e} ({hint})" if hint else e)
    finally:
        observer.close()


# What to pass, on this command line, for the argument a library error is about.
_TRAINING_HINTS = {
    "data_dir": "pass --data-dir",
    "device": "pass --device cuda or auto",
    "run_dir": "go on with --resume RUN_DIR, or give another --out",
    "imagenet_weights": "pass --imagenet-weights FILE",
    "num_mel_bins": "pass --mel-bins",
}


def report_run(summary: dict) -> None:
    if not _is_main():
        return
    best = summary["best"]
    # No score: no validation split, or a metric undefined on it (e.g. mAP with no positives).
    score = "n/a (not validated)" if best["score"] is None else f"{best['score']:.4f}"
    console.print(f"best {summary['metric']} {score} at epoch {summary['best_epoch']}; run in "
                  f"{escape(summary['run_dir'])}", highlight=False, soft_wrap=True)
    print(json.dumps(summary, indent=2))


def report_folds(summary: dict) -> None:
    if not _is_main():
        return
    for which in ("best", "last"):
        spread = summary[which]
        if spread["mean"] is not None:
            console.print(f"{which}-epoch {summary['metric']} over folds {summary['completed']}: "
                          f"{100 * spread['mean']:.2f} +- {100 * spread['std']:.2f}", highlight=False)
    print(json.dumps(summary, indent=2))


class TrainingProgress:
    """A Rich progress bar per epoch and one line per finished epoch, on stderr.

    It has every method of asttag.training.Observer (not subclassed: that would import torch
    with this module).
    """

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Progress | None = None
        self._task: TaskID | None = None  # the running epoch's, on the bar

    # The engine calls these (see asttag.training.Observer).
    def run_started(self, run_dir: Path, recipe: Recipe, *, first_epoch: int) -> None:
        if self.enabled:
            start = "" if first_epoch == 1 else f", from epoch {first_epoch}"
            console.print(f"training {recipe.name} on {escape(str(recipe.data_dir))} into "
                          f"{escape(str(run_dir))}{start}", highlight=False, soft_wrap=True)

    def epoch_started(self, epoch: int, *, epochs: int, steps: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("steps  loss {task.fields[loss]}"), TimeElapsedColumn(),
                TimeRemainingColumn(), console=console, transient=True,
                redirect_stdout=False, redirect_stderr=False,
            )
            self._bar.start()
        self._task = self._bar.add_task(f"epoch {epoch}/{epochs}", total=steps, loss="-")

    def step_done(self, loss: float) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, loss=f"{loss:.4f}")

    def validating(self, what: str) -> None:
        # Also called after the last epoch (test split, averaged model), when no epoch is running.
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=f"scoring ({what})")

    def epoch_done(self, record: dict) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.remove_task(self._task)
            self._task = None
        if not self.enabled:
            return
        parts = [f"epoch {record['epoch']}", f"train loss {record['train_loss']:.4f}",
                 f"{record['samples_per_second']:.1f} samples/s"]
        if "valid_loss" in record:
            parts += [f"valid loss {record['valid_loss']:.4f}", f"accuracy {record['accuracy']:.4f}"]
            if record["mAP"] is not None:
                parts.append(f"mAP {record['mAP']:.4f}")
        console.print("  ".join(parts), highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# --------------------------------------------------------------------------- evaluation


def load_split(data: Path, *, layout: str, split: str | None, options: list[str] | None):
    """The data set's label set, the chosen split's name and its examples; notes on stderr."""
    from ..datasets import detect_layout, load_dataset
    from ..evaluation import choose_split

    if not data.exists():
        fail(f"{data}: no such file or directory", code=EXIT_USAGE)
    name = detect_layout(data) if layout == "auto" else layout
    try:
        splits = load_dataset(name, data, **parse_data_options(options))
        split_name, examples = choose_split(splits, split)
    except TypeError as e:  # the readers take typed options; a --data-option of the wrong kind
        fail(f"{name}: a --data-option of the wrong type ({e})", code=EXIT_USAGE)
    except user_errors() as e:
        fail(e)
    for note in splits.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(f"evaluating on {data} ({name}, {split_name} split): {len(examples)} clips, "
                  f"{len(splits.labels)} classes", highlight=False, soft_wrap=True)
    return splits.labels, split_name, examples


def report_metrics(context: dict, rows: list[tuple[str, dict, Metrics]], *, output_format: OutputFormat,
           per_class: bool) -> None:
    """Print metrics of one or more models: a table on a terminal, else JSON.

    `rows` are (name, model identity, Metrics); per-class figures are those of the last row
    (the model, or the ensemble after its members).
    """
    _note_excluded(rows[-1][2])  # every row scores the same targets: the same classes are out
    if output_format is OutputFormat.auto:
        output_format = OutputFormat.table if sys.stdout.isatty() else OutputFormat.json
    if output_format is OutputFormat.json:
        results = [
            {"name": name, "model": identity,
             "metrics": metrics.to_dict(per_class=per_class and i == len(rows) - 1)}
            for i, (name, identity, metrics) in enumerate(rows)
        ]
        print(json.dumps({**context, "results": results}, indent=2))
        return
    _print_tables(rows, per_class=per_class)


def _note_excluded(metrics) -> None:
    from ..datasets.base import quote

    reasons: dict[str, list[str]] = {}
    for e in metrics.excluded:
        reasons.setdefault(e.reason, []).append(e.name)
    for reason, names in reasons.items():
        console.print(f"note: {len(names)} class(es) with {reason} left out of the means: "
                      f"{quote(names)}", highlight=False, soft_wrap=True)


def _print_tables(rows, *, per_class: bool) -> None:
    from rich.console import Console
    from rich.table import Column, Table

    out = Console()
    table = Table(Column("model", overflow="fold"), "clips", "mAP", "mean AUC", "d-prime", "accuracy", "classes scored")
    for name, _, m in rows:
        table.add_row(name, str(m.n_examples), _fmt(m.mAP), _fmt(m.mean_auc), _fmt(m.d_prime),
                      _fmt(m.accuracy), f"{m.n_classes - len(m.excluded)} of {m.n_classes}")
    out.print(table)
    if per_class:
        m = rows[-1][2]
        detail = Table("index", "label", "AP", "AUC", title=f"per class: {rows[-1][0]}")
        for i in range(m.n_classes):
            detail.add_row(str(i), m.class_name(i), _fmt(m.per_class_ap[i]),
                           _fmt(m.per_class_auc[i]))
        out.print(detail)


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"  # NaN: an excluded class or no mean
