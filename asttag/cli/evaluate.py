"""`asttag evaluate`: a model's mAP, mean AUC, d-prime and accuracy on a data set.

The data options, the run options and the report are shared with `asttag ensemble evaluate`.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import EXIT_USAGE, app, console, fail


class OutputFormat(str, Enum):
    auto = "auto"
    table = "table"
    json = "json"


LayoutOption = Annotated[str, typer.Option(
    "--layout", "-l", help="Data set layout: esc50, speechcommands, audioset, folder, manifest, "
    "or auto (guessed from DATA).")]
SplitOption = Annotated[Optional[str], typer.Option(
    "--split", help="train, valid or test (default: test, else valid, else train: the first "
    "the data set has).", show_default=False)]
DataOptions = Annotated[Optional[list[str]], typer.Option(
    "--data-option", "-D", help="KEY=VALUE option for the layout's reader, e.g. fold=3 "
    "(esc50), label_file=labels.csv, valid=valid.csv (manifest). Repeatable.",
    show_default=False)]
BatchSize = Annotated[int, typer.Option(
    "--batch-size", "-b", min=1, help="Clips per forward pass.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Workers = Annotated[int, typer.Option("--workers", "-j", min=0, help="Audio decoding processes.")]
PrecisionOption = Annotated[str, typer.Option(
    "--precision", help="fp32, bf16, fp16 or auto (bf16/fp16 on CUDA, fp32 on the CPU).")]
FormatOption = Annotated[OutputFormat, typer.Option(
    "--format", "-f", help="table or json; auto: a table on a terminal, JSON otherwise.")]
PerClass = Annotated[bool, typer.Option("--per-class", help="Also report AP and AUC per label.")]
SavePredictions = Annotated[Optional[Path], typer.Option(
    "--save-predictions", help="Keep the scores per clip (.npz) for `asttag ensemble evaluate "
    "--from-predictions`.", show_default=False)]


@app.command()
def evaluate(
    data: Annotated[Path, typer.Argument(help="The data set: a folder or a manifest file.",
                                         show_default=False)],
    model: Annotated[str, typer.Option(
        "--model", "-m", help="A checkpoint, ensemble bundle, transformers folder or model name.")
    ] = "default",
    layout: LayoutOption = "auto",
    split: SplitOption = None,
    data_option: DataOptions = None,
    batch_size: BatchSize = 16,
    device: DeviceOption = "auto",
    workers: Workers = 0,
    precision: PrecisionOption = "fp32",
    output_format: FormatOption = OutputFormat.auto,
    per_class: PerClass = False,
    save_predictions: SavePredictions = None,
) -> None:
    """Evaluate a model on a data set: mAP, mean AUC, d-prime and accuracy, as the AST paper.

    Classes without a positive (or a negative) example are left out of the means and listed.
    """
    from ..evaluation import model_identity, predict_split, save_predictions as save
    from ..hub import load_model

    labels, split_name, examples = load_split(data, layout=layout, split=split, options=data_option)
    try:
        loaded = load_model(model, device=device)
        predictions = predict_split(
            loaded, examples, data_labels=labels, identity=model_identity(model),
            batch_size=batch_size, device=device, workers=workers, precision=precision,
        )
        metrics = predictions.metrics()
        if save_predictions is not None:
            save(predictions, save_predictions)
    except user_errors() as e:
        fail(str(e))
    if save_predictions is not None:
        console.print(f"predictions saved to {save_predictions}", highlight=False, soft_wrap=True)
    report(
        {"data": str(data), "split": split_name}, [(model, predictions.model, metrics)],
        output_format=output_format, per_class=per_class,
    )


# --------------------------------------------------------------------------- shared helpers


def user_errors() -> tuple[type[BaseException], ...]:
    """What a bad model, data set or option raises: reported as one error line, exit status 1.

    The library's own errors (checkpoint, data set, evaluation, ensemble) are ValueErrors.
    """
    from ..audio import AudioError
    from ..hub import HubError

    return AudioError, HubError, OSError, ValueError


def parse_data_options(items: list[str] | None) -> dict[str, object]:
    """KEY=VALUE pairs as reader options: true/false, whole and decimal numbers are typed."""
    options: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--data-option {item!r}: expected KEY=VALUE", code=EXIT_USAGE)
        options[key] = _typed(value)
    return options


def _typed(value: str) -> object:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


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
        fail(str(e))
    for note in splits.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(f"evaluating on {data} ({name}, {split_name} split): {len(examples)} clips, "
                  f"{len(splits.labels)} classes", highlight=False, soft_wrap=True)
    return splits.labels, split_name, examples


def report(context: dict, rows: list[tuple[str, dict, object]], *, output_format: OutputFormat,
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
    return "-" if value != value else f"{value:.4f}"  # NaN: an excluded class or no mean
