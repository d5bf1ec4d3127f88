"""`asttag evaluate`: a model's mAP, mean AUC, d-prime and accuracy on a data set.

Its options, the data set reading and the report are shared with `asttag ensemble evaluate`
(cli/options.py, cli/reporting.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, check_output_file, console, fail, user_errors
from .options import (
    DEVICE,
    DataOptions,
    Device,
    EvalBatchSize,
    EvalPrecision,
    Layout,
    OutputFormat,
    PerClass,
    ReportFormat,
    SavePredictions,
    Split,
    Workers,
)
from .reporting import load_split, report_metrics


@app.command()
def evaluate(
    data: Annotated[Path, typer.Argument(help="The data set: a folder or a manifest file.",
                                         show_default=False)],
    model: Annotated[str, typer.Option(
        "--model", "-m", help="A checkpoint, ensemble bundle, transformers folder or model name.")
    ] = "default",
    layout: Layout = "auto",
    split: Split = None,
    data_option: DataOptions = None,
    batch_size: EvalBatchSize = 16,
    device: Device = DEVICE,
    workers: Workers = 0,
    precision: EvalPrecision = "fp32",
    output_format: ReportFormat = OutputFormat.auto,
    per_class: PerClass = False,
    save_predictions: SavePredictions = None,
) -> None:
    """Evaluate a model on a data set: mAP, mean AUC, d-prime and accuracy, as the AST paper.

    Classes without a positive (or a negative) example are left out of the means and listed.
    """
    from ..evaluation import model_identity, predict_split
    from ..evaluation import save_predictions as save
    from ..hub import load_model

    if save_predictions is not None:
        check_output_file(save_predictions, force=True)
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
        fail(e)
    if save_predictions is not None:
        console.print(f"predictions saved to {save_predictions}", highlight=False, soft_wrap=True)
    report_metrics(
        {"data": str(data), "split": split_name}, [(model, predictions.model, metrics)],
        output_format=output_format, per_class=per_class,
    )
