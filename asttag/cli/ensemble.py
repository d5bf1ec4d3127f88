"""`asttag ensemble create` and `asttag ensemble evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import EXIT_USAGE, PlainGroup, app, check_output_file, console, fail, user_errors
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

ensemble_app = typer.Typer(
    cls=PlainGroup,
    rich_markup_mode=None,
    help="Ensembles: several models' probabilities averaged (the paper's Ensemble-S/-M).",
    no_args_is_help=True,
)
app.add_typer(ensemble_app, name="ensemble")


@ensemble_app.command("create")
def create(
    models: Annotated[list[str], typer.Argument(
        help="Checkpoints, bundles, transformers folders or model names sharing one label set.",
        show_default=False)],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="The bundle to write (.safetensors).", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT.")] = False,
) -> None:
    """Bundle models into one file that `asttag tag` and `asttag evaluate` use like one model.

    Members may differ in size, patch strides and input length; they must share the label set
    and the spectrogram (sample rate, mel bins). Prints `SHA256  OUTPUT` on stdout.
    """
    from ..atomic import sha256_file
    from ..ensemble import Ensemble, save_bundle
    from ..evaluation import model_identity
    from ..hub import load_model

    if output.suffix != ".safetensors":
        fail(f"{output}: a bundle is a .safetensors file; name it so", code=EXIT_USAGE)
    check_output_file(output, force=force)
    try:
        ensemble = Ensemble([load_model(source, device="cpu") for source in models])
        save_bundle(ensemble, output, extra={"members": [model_identity(s) for s in models]})
    except user_errors() as e:
        fail(e)
    f = ensemble.features
    console.print(
        f"wrote {output}: {len(ensemble.members)} members, {len(ensemble.labels)} labels, input "
        f"{f.target_length} frames x {f.num_mel_bins} mel bins", highlight=False, soft_wrap=True,
    )
    print(f"{sha256_file(output)}  {output}")


@ensemble_app.command("evaluate")
def evaluate(
    inputs: Annotated[list[str], typer.Argument(
        metavar="INPUTS",
        help="MODELS... DATA: models, then the data set; with --from-predictions, "
        "PREDICTIONS...: files saved by "
        "`asttag evaluate --save-predictions`.", show_default=False)],
    from_predictions: Annotated[bool, typer.Option(
        "--from-predictions", help="Ensemble saved predictions instead of running models.")
    ] = False,
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
    """Evaluate an ensemble and each of its members on a data set (or on saved predictions).

    Each member scores each clip as it would alone; the ensemble's scores are their mean.
    Per-class figures (--per-class) are the ensemble's.
    """
    from ..evaluation import ensemble_predictions
    from ..evaluation import save_predictions as save

    if save_predictions is not None:
        check_output_file(save_predictions, force=True)
    if from_predictions:
        context: dict[str, object] = {"predictions": inputs}
        members = _saved(inputs)
    else:
        if len(inputs) < 2:
            fail("give one or more models and then the data set", code=EXIT_USAGE)
        *sources, data = inputs
        labels, split_name, examples = load_split(Path(data), layout=layout, split=split,
                                                  options=data_option)
        context = {"data": data, "split": split_name}
        members = _run(sources, examples, labels, batch_size=batch_size, device=device,
                       workers=workers, precision=precision)
    try:
        combined = ensemble_predictions(members)
        rows = [(_name(p.model, i), p.model, p.metrics()) for i, p in enumerate(members)]
        rows.append(("ensemble", combined.model, combined.metrics()))
        if save_predictions is not None:
            save(combined, save_predictions)
    except user_errors() as e:
        fail(e)
    if save_predictions is not None:
        console.print(f"ensemble predictions saved to {save_predictions}", highlight=False,
                      soft_wrap=True)
    report_metrics(context, rows, output_format=output_format, per_class=per_class)


def _saved(files: list[str]) -> list:
    from ..evaluation import load_predictions

    try:
        return [load_predictions(f) for f in files]
    except user_errors() as e:
        fail(e)


def _name(identity: dict, index: int) -> str:
    if "source" not in identity:  # saved predictions of an ensemble
        return f"member {index}"
    member = identity.get("member")
    return identity["source"] + (f" member {member}" if member is not None else "")


def _run(sources: list[str], examples, labels, **run) -> list:
    """Each member's predictions; all members are loaded (and checked) before any runs.

    A bundle's members run one by one and weigh one each, as `ensemble create` counts them.
    """
    from ..ensemble import Ensemble
    from ..evaluation import model_identity, predict_split
    from ..hub import load_model

    try:
        members = []
        for source in sources:
            model, identity = load_model(source, device="cpu"), model_identity(source)
            if isinstance(model, Ensemble):
                members += [({**identity, "member": i}, m) for i, m in enumerate(model.members)]
            else:
                members.append((identity, model))
        Ensemble([m for _, m in members])  # refuses members that do not fit, before any runs
        predictions = []
        for i, (identity, model) in enumerate(members):
            console.print(f"running {_name(identity, i)}", highlight=False, soft_wrap=True)
            predictions.append(predict_split(model, examples, data_labels=labels,
                                             identity=identity, **run))
            model.to("cpu")  # one member on the device at a time
        return predictions
    except user_errors() as e:
        fail(e)
