"""`asttag finetune` and `asttag train`: a recipe, with flags laid over it, run by the engine.

The recipe comes from asttag/data/recipes/ (the data set's own, or --recipe NAME|FILE); each flag
given overrides one of its values and --set KEY=VALUE any other. The run directory's summary
goes to stdout as JSON; progress and epoch lines go to stderr. Under torchrun every process
runs this command and only rank 0 draws progress and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..choices import DATASET_LAYOUTS, DatasetLayout
from .app import EXIT_USAGE, app, fail
from .options import (
    DEVICE,
    RUN_OPTIONS,
    CacheDir,
    DataDir,
    DataOptions,
    Device,
    Epochs,
    FStride,
    GradAccum,
    ImagenetWeights,
    Init,
    LearningRate,
    Out,
    Quiet,
    RecipeOption,
    Resume,
    Seed,
    Sets,
    Size,
    TrainBatchSize,
    TrainPrecision,
    TStride,
    Workers,
    build_recipe,
    given,
    refuse_given,
)
from .reporting import guarded, report_folds, report_run, runtime

if TYPE_CHECKING:
    from ..recipes import Recipe
    from ..training import Runtime

_LAYOUTS = ", ".join(DATASET_LAYOUTS)

# The shipped recipe each data set starts from.
_DEFAULT_RECIPE = {"audioset": "audioset-balanced"}
ESC50_FOLDS = (1, 2, 3, 4, 5)
_RESUME_REFUSED = "--resume goes on with the run's own recipe and output folder"


@app.command()
def finetune(
    ctx: typer.Context,
    dataset: Annotated[Optional[DatasetLayout], typer.Argument(
        help=f"Data set layout: {_LAYOUTS}.",
        show_default=False)] = None,
    data_dir: DataDir = None,
    fold: Annotated[Optional[str], typer.Option(
        "--fold", help="ESC-50 fold held out (1-5), or all: five runs, mean and std.")] = None,
    data_option: DataOptions = None,
    init: Init = None,
    imagenet_weights: ImagenetWeights = None,
    size: Size = None,
    fstride: FStride = None,
    tstride: TStride = None,
    epochs: Epochs = None,
    lr: LearningRate = None,
    batch_size: TrainBatchSize = None,
    grad_accum: GradAccum = None,
    seed: Seed = None,
    out: Out = None,
    recipe: RecipeOption = None,
    set_: Sets = None,
    resume: Resume = None,
    device: Device = DEVICE,
    precision: TrainPrecision = None,
    workers: Workers = 0,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Fine-tune an AST on ESC-50, Speech Commands, AudioSet-style data or your own.

    Defaults are the paper's recipe for the data set (shipped recipes); flags override them.
    """
    run = runtime(device, workers, cache_dir)
    if resume is not None:
        refuse_given(ctx, allowed=RUN_OPTIONS, reason=_RESUME_REFUSED)
        _resume(resume, run, quiet=quiet)
        return
    if dataset is None:
        fail(f"give a DATASET ({_LAYOUTS}) or --resume RUN_DIR",
             code=EXIT_USAGE)
    folds = _folds(fold, dataset)
    options = {**given(ctx), "dataset": dataset, "fold": folds[0] if len(folds) == 1 else None}
    base = build_recipe(recipe or _DEFAULT_RECIPE.get(dataset, dataset), options)
    if len(folds) > 1:
        _cross_validate(base, out, folds, run, quiet=quiet)
    else:
        _train(base, out, run, quiet=quiet)


@app.command()
def train(
    ctx: typer.Context,
    data_dir: DataDir = None,
    recipe: Annotated[Optional[str], typer.Option(
        "--recipe", help="audioset-balanced (default), audioset-full, another shipped recipe or a "
        "YAML file.")] = None,
    data_option: DataOptions = None,
    init: Init = None,
    imagenet_weights: ImagenetWeights = None,
    size: Size = None,
    fstride: FStride = None,
    tstride: TStride = None,
    epochs: Epochs = None,
    lr: LearningRate = None,
    batch_size: TrainBatchSize = None,
    grad_accum: GradAccum = None,
    seed: Seed = None,
    out: Out = None,
    set_: Sets = None,
    resume: Resume = None,
    device: Device = DEVICE,
    precision: TrainPrecision = None,
    workers: Workers = 0,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Train an AST on AudioSet-style data: the paper's balanced or full recipe.

    DATA_DIR holds the segments CSVs and the clips (or is an AST JSON manifest, with
    -D valid=eval.json). Balanced sampling, warmup, step decay and weight averaging come from
    the recipe.
    """
    run = runtime(device, workers, cache_dir)
    if resume is not None:
        refuse_given(ctx, allowed=RUN_OPTIONS, reason=_RESUME_REFUSED)
        _resume(resume, run, quiet=quiet)
        return
    _train(build_recipe(recipe or "audioset-balanced", given(ctx)), out, run, quiet=quiet)


def _folds(fold: str | None, dataset: str) -> tuple[int | None, ...]:
    if fold is None:
        return (None,)
    if fold == "all":
        if dataset != "esc50":
            fail("--fold all runs ESC-50's five folds; other data sets have no folds", code=EXIT_USAGE)
        return ESC50_FOLDS
    try:
        return (int(fold),)
    except ValueError:
        fail(f"--fold {fold!r}: expected a fold number or all", code=EXIT_USAGE)


def _train(recipe: Recipe, out: Path | None, run: Runtime, *, quiet: bool) -> None:
    from ..training import train as train_run

    result = guarded(lambda observer: train_run(recipe, out, runtime=run, observer=observer),
                     quiet=quiet)
    report_run(result.summary)


def _resume(run_dir: Path, run: Runtime, *, quiet: bool) -> None:
    from ..training import CrossValidation, resume_training

    result = guarded(lambda observer: resume_training(run_dir, runtime=run, observer=observer),
                     quiet=quiet)
    if isinstance(result, CrossValidation):
        report_folds(result.summary)
    else:
        report_run(result.summary)


def _cross_validate(recipe: Recipe, out: Path | None, folds, run: Runtime, *, quiet: bool) -> None:
    from ..training import cross_validate

    result = guarded(lambda observer: cross_validate(
        recipe, out, folds=folds, runtime=run, observer=observer), quiet=quiet)
    report_folds(result.summary)
