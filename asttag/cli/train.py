"""`asttag finetune` and `asttag train`: a recipe, with flags laid over it, run by the engine.

The recipe comes from asttag/data/recipes/ (the data set's own, or --recipe NAME|FILE); each flag
given overrides one of its values and --set KEY=VALUE any other. The run directory's summary
goes to stdout as JSON; progress and epoch lines go to stderr. Under torchrun every process
runs this command and only rank 0 draws progress and prints.
"""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from .app import EXIT_USAGE, app, console, fail
from .evaluate import parse_data_options, user_errors

if TYPE_CHECKING:
    from ..recipes import Recipe
    from ..training import Runtime


class DatasetName(str, Enum):
    esc50 = "esc50"
    speechcommands = "speechcommands"
    audioset = "audioset"
    folder = "folder"
    manifest = "manifest"


# The shipped recipe each data set starts from.
_DEFAULT_RECIPE = {"audioset": "audioset-balanced"}
ESC50_FOLDS = (1, 2, 3, 4, 5)

DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", "-d", help="The data set: its folder, or its manifest / AST JSON file.")]
DataOptions = Annotated[Optional[list[str]], typer.Option(
    "--data-option", "-D", help="KEY=VALUE option for the layout's reader, e.g. valid=val.csv, "
    "label_file=labels.csv, valid_fraction=0.2, audio_dir=clips/ (repeatable).")]
Init = Annotated[Optional[str], typer.Option(
    "--init", help="audioset (the published AudioSet model, AST-P), imagenet (DeiT, AST-S), "
    "none (from scratch), or a checkpoint path / model name. Default: the recipe's.")]
ImagenetWeights = Annotated[Optional[Path], typer.Option(
    "--imagenet-weights", help="Local DeiT weights (timm model.safetensors or .pth) for --init "
    "imagenet; without it timm downloads them.")]
Size = Annotated[Optional[str], typer.Option(
    "--size", help="Size preset for imagenet/none: tiny224, small224, base224, base384.")]
FStride = Annotated[Optional[int], typer.Option("--fstride", min=1, help="Patch stride along frequency.")]
TStride = Annotated[Optional[int], typer.Option("--tstride", min=1, help="Patch stride along time.")]
Epochs = Annotated[Optional[int], typer.Option("--epochs", min=1, help="Epochs to train.")]
LearningRate = Annotated[Optional[float], typer.Option(
    "--lr", min=0.0, help="Peak learning rate (replaces the recipe's per-init rates).")]
BatchSize = Annotated[Optional[int], typer.Option(
    "--batch-size", "-b", min=1, help="Examples per optimiser step, over all processes.")]
GradAccum = Annotated[Optional[int], typer.Option(
    "--grad-accum", min=1, help="Forward passes per optimiser step (the batch is split).")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Seed of every random choice.")]
Out = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Run directory to create (default: runs/<recipe>-<time>).")]
RecipeOption = Annotated[Optional[str], typer.Option(
    "--recipe", help="A shipped recipe name or a recipe YAML file.")]
Sets = Annotated[Optional[list[str]], typer.Option(
    "--set", help="KEY=VALUE recipe override, YAML-typed (mixup=0.5, model.depth=6); repeatable.")]
Resume = Annotated[Optional[Path], typer.Option(
    "--resume", help="Go on with this run directory from its last completed epoch.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Precision = Annotated[Optional[str], typer.Option(
    "--precision", help="auto (bf16/fp16 on CUDA, fp32 on the CPU), fp32, bf16 or fp16.")]
Workers = Annotated[int, typer.Option("--workers", "-j", min=0, help="Audio decoding processes.")]
CacheDir = Annotated[Optional[Path], typer.Option(
    "--cache-dir", help="Keep decoded clips and log-mel frames here: later epochs skip decoding.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or epoch lines.")]


@app.command()
def finetune(
    dataset: Annotated[Optional[DatasetName], typer.Argument(
        help="Data set layout: esc50, speechcommands, audioset, folder, manifest.",
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
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    seed: Seed = None,
    out: Out = None,
    recipe: RecipeOption = None,
    set_: Sets = None,
    resume: Resume = None,
    device: Device = "auto",
    precision: Precision = None,
    workers: Workers = 0,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Fine-tune an AST on ESC-50, Speech Commands, AudioSet-style data or your own.

    Defaults are the paper's recipe for the data set (shipped recipes); flags override them.
    """
    runtime = _runtime(device, workers, cache_dir)
    if resume is not None:
        _refuse_with_resume(
            DATASET=dataset, **{"--data-dir": data_dir, "--fold": fold, "-D": data_option,
                                "--init": init, "--imagenet-weights": imagenet_weights,
                                "--size": size, "--fstride": fstride, "--tstride": tstride,
                                "--epochs": epochs, "--lr": lr, "--batch-size": batch_size,
                                "--grad-accum": grad_accum, "--seed": seed, "--out": out,
                                "--recipe": recipe, "--set": set_, "--precision": precision})
        _resume(resume, runtime, quiet=quiet)
        return
    if dataset is None:
        fail("give a DATASET (esc50, speechcommands, audioset, folder, manifest) or --resume RUN_DIR",
             code=EXIT_USAGE)
    folds = _folds(fold, dataset.value)
    base = _build_recipe(
        recipe or _DEFAULT_RECIPE.get(dataset.value, dataset.value), dataset=dataset.value,
        data_dir=data_dir, data_option=data_option, init=init, imagenet_weights=imagenet_weights,
        size=size, fstride=fstride, tstride=tstride, epochs=epochs, lr=lr, batch_size=batch_size,
        grad_accum=grad_accum, seed=seed, precision=precision, sets=set_,
        fold=folds[0] if len(folds) == 1 else None,
    )
    if len(folds) > 1:
        _cross_validate(base, out, folds, runtime, quiet=quiet)
    else:
        _train(base, out, runtime, quiet=quiet)


@app.command()
def train(
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
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    seed: Seed = None,
    out: Out = None,
    set_: Sets = None,
    resume: Resume = None,
    device: Device = "auto",
    precision: Precision = None,
    workers: Workers = 0,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Train an AST on AudioSet-style data: the paper's balanced or full recipe.

    DATA_DIR holds the segments CSVs and the clips (or is an AST JSON manifest, with
    -D valid=eval.json). Balanced sampling, warmup, step decay and weight averaging come from
    the recipe.
    """
    runtime = _runtime(device, workers, cache_dir)
    if resume is not None:
        _refuse_with_resume(**{"--data-dir": data_dir, "-D": data_option, "--init": init,
                               "--imagenet-weights": imagenet_weights, "--size": size,
                               "--fstride": fstride, "--tstride": tstride, "--epochs": epochs,
                               "--lr": lr, "--batch-size": batch_size, "--grad-accum": grad_accum,
                               "--seed": seed, "--out": out, "--recipe": recipe, "--set": set_,
                               "--precision": precision})
        _resume(resume, runtime, quiet=quiet)
        return
    base = _build_recipe(
        recipe or "audioset-balanced", dataset=None, data_dir=data_dir, data_option=data_option, init=init,
        imagenet_weights=imagenet_weights, size=size, fstride=fstride, tstride=tstride,
        epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum, seed=seed,
        precision=precision, sets=set_, fold=None,
    )
    _train(base, out, runtime, quiet=quiet)


# --------------------------------------------------------------------------- recipe


def _refuse_with_resume(**given: object) -> None:
    """A resumed run follows its own recipe: options that would change it are refused."""
    named = [name for name, value in given.items() if value not in (None, [])]
    if named:
        fail(f"--resume goes on with the run's own recipe and output folder; drop {', '.join(named)}",
             code=EXIT_USAGE)


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


def _build_recipe(
    name: str, *, dataset: str | None, data_dir: Path | None, data_option: list[str] | None,
    init: str | None, imagenet_weights: Path | None, size: str | None, fstride: int | None,
    tstride: int | None, epochs: int | None, lr: float | None, batch_size: int | None,
    grad_accum: int | None, seed: int | None, precision: str | None, sets: list[str] | None,
    fold: int | None,
) -> Recipe:
    """The named recipe with the flags given laid over it (flags win over --set)."""
    from ..recipes import RecipeError, load_recipe, parse_override

    try:
        base = load_recipe(name)
        overrides = dict(parse_override(item) for item in sets or [])
        data = parse_data_options(data_option)
        if "valid" in data and "valid_fraction" not in data:
            # A validation manifest replaces the recipe's held-out fraction (readers take one).
            data["valid_fraction"] = None
        if fold is not None:
            data["fold"] = fold
        overrides.update({f"data.{key}": value for key, value in data.items()})
        flags = {
            "dataset": dataset, "data_dir": str(data_dir) if data_dir else None, "init": init,
            "imagenet_weights": str(imagenet_weights) if imagenet_weights else None, "size": size,
            "epochs": epochs, "batch_size": batch_size, "grad_accum": grad_accum, "seed": seed,
            "precision": precision,
        }
        overrides.update({key: value for key, value in flags.items() if value is not None})
        if fstride is not None or tstride is not None:
            overrides["stride"] = [fstride or base.stride[0], tstride or base.stride[1]]
        if lr is not None:
            overrides.update(lr=lr, lr_by_init={})
        return base.with_overrides(overrides)
    except RecipeError as e:
        fail(str(e), code=EXIT_USAGE)


def _runtime(device: str, workers: int, cache_dir: Path | None) -> Runtime:
    from ..training import Runtime

    return Runtime(device=device, workers=workers, cache=cache_dir)


# --------------------------------------------------------------------------- running


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _train(recipe: Recipe, out: Path | None, runtime: Runtime, *, quiet: bool) -> None:
    from ..training import train as run

    result = _guarded(lambda observer: run(recipe, out, runtime=runtime, observer=observer), quiet=quiet)
    _report(result.summary)


def _resume(run_dir: Path, runtime: Runtime, *, quiet: bool) -> None:
    from ..runs import resume_training
    from ..training import CrossValidation

    result = _guarded(lambda observer: resume_training(run_dir, runtime=runtime, observer=observer),
                      quiet=quiet)
    if isinstance(result, CrossValidation):
        _report_folds(result.summary)
    else:
        _report(result.summary)


def _cross_validate(recipe: Recipe, out: Path | None, folds, runtime: Runtime, *, quiet: bool) -> None:
    from ..training import cross_validate

    result = _guarded(lambda observer: cross_validate(
        recipe, out, folds=folds, runtime=runtime, observer=observer), quiet=quiet)
    _report_folds(result.summary)


def _guarded(run, *, quiet: bool):
    """Run the engine with a progress observer; the library's errors end the command cleanly."""
    from ..pretrained import PretrainedError
    from ..training import TrainingError, close_distributed

    observer = _Progress(enabled=not quiet and _is_main())
    try:
        return run(observer)
    except (TrainingError, PretrainedError, *user_errors()) as e:
        fail(str(e))
    finally:
        observer.close()
        close_distributed()


def _report(summary: dict) -> None:
    if not _is_main():
        return
    best = summary["best"]
    # No score: no validation split, or a metric undefined on it (e.g. mAP with no positives).
    score = "n/a (not validated)" if best["score"] is None else f"{best['score']:.4f}"
    console.print(f"best {summary['metric']} {score} at epoch {summary['best_epoch']}; run in "
                  f"{escape(summary['run_dir'])}", highlight=False, soft_wrap=True)
    print(json.dumps(summary, indent=2))


def _report_folds(summary: dict) -> None:
    if not _is_main():
        return
    for which in ("best", "last"):
        spread = summary[which]
        if spread["mean"] is not None:
            console.print(f"{which}-epoch {summary['metric']} over folds {summary['completed']}: "
                          f"{100 * spread['mean']:.2f} +- {100 * spread['std']:.2f}", highlight=False)
    print(json.dumps(summary, indent=2))


class _Progress:
    """A Rich progress bar per epoch and one line per finished epoch, on stderr.

    It has every method of asttag.training.Observer (not subclassed: that would import torch
    with this module).
    """

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = None
        self._task = None

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
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
            from rich.progress import TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("steps  loss {task.fields[loss]}"), TimeElapsedColumn(),
                TimeRemainingColumn(), console=console, transient=True,
                redirect_stdout=False, redirect_stderr=False,
            )
            self._bar.start()
        self._task = self._bar.add_task(f"epoch {epoch}/{epochs}", total=steps, loss="-")

    def step_done(self, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, loss=f"{loss:.4f}")

    def validating(self, what: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"scoring ({what})")

    def epoch_done(self, record: dict) -> None:
        if self._bar is not None:
            self._bar.remove_task(self._task)
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
