"""`asttag distill`: train a student AST on a teacher's scores (the distill mode of training).

The teacher is any model asttag loads (to compress the published 88M-parameter AST into a small
CPU model) or YAMNet's .tflite file (`pip install 'asttag[yamnet]'`). The student comes from a
recipe (default: default-student, the embedded default model's) with flags laid over it, as
`asttag train` does. The run directory's summary goes to stdout as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import EXIT_USAGE, app, console, fail, user_errors
from .options import (
    COUNT,
    DEVICE,
    RUN_OPTIONS,
    CacheDir,
    DataOptions,
    Device,
    Epochs,
    FStride,
    LearningRate,
    Quiet,
    Seed,
    Sets,
    Size,
    TrainBatchSize,
    TrainPrecision,
    TStride,
    Workers,
    build_recipe,
    given,
    number,
    refuse_given,
)
from .reporting import guarded, report_run, runtime

DEFAULT_RECIPE = "default-student"
DEFAULT_VALID_FRACTION = 0.1


@app.command()
def distill(
    ctx: typer.Context,
    data: Annotated[Optional[list[Path]], typer.Argument(
        help="Audio files, folders (searched recursively) or one manifest (.csv/.jsonl) whose "
        "paths are used; its labels are not.", show_default=False)] = None,
    teacher: Annotated[Optional[str], typer.Option(
        "--teacher", help="The teacher: a model name, checkpoint or folder asttag loads, or a "
        "YAMNet .tflite file.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Run directory to create (default: runs/distill-<time>).")] = None,
    recipe: Annotated[str, typer.Option(
        "--recipe", help="A shipped recipe name or a recipe YAML file.")] = DEFAULT_RECIPE,
    size: Size = None,
    depth: Annotated[Optional[int], typer.Option(
        "--depth", parser=COUNT, metavar="N", help="Transformer blocks.")] = None,
    fstride: FStride = None,
    tstride: TStride = None,
    mel_bins: Annotated[Optional[int], typer.Option(
        "--mel-bins", parser=COUNT, metavar="N", help="Mel bins of the student's input (a model teacher's own).")] = None,
    length: Annotated[Optional[int], typer.Option(
        "--length", parser=number(whole=True, at_least=16), metavar="FRAMES", help="Student window in 10 ms frames (1024: 10.24 s).")] = None,
    epochs: Epochs = None,
    lr: LearningRate = None,
    batch_size: TrainBatchSize = None,
    seed: Seed = None,
    data_option: DataOptions = None,
    set_: Sets = None,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", help="Go on with this distillation run from its last completed epoch.")] = None,
    device: Device = DEVICE,
    precision: TrainPrecision = None,
    workers: Workers = 0,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Distil a teacher into a small student AST on your recordings.

    Recordings are cut into the student's windows and scored once by the teacher; a model teacher also scores every augmented training batch.

    10% of the windows validate unless -D valid_fraction=... says otherwise.
    """
    from ..distill import distill as run_distill
    from ..distill import resume_distill

    run = runtime(device, workers, cache_dir)
    if resume is not None:
        refuse_given(ctx, allowed=RUN_OPTIONS,
                     reason="--resume goes on with the run's own recipe, teacher and data")
        # guarded reports the library's errors (DistillError is a ValueError) as one line.
        result = guarded(lambda observer: resume_distill(resume, runtime=run, observer=observer),
                         quiet=quiet)
        report_run(result.summary)
        return
    if not data or teacher is None:
        fail("give DATA and --teacher MODEL|YAMNET.tflite, or --resume RUN_DIR", code=EXIT_USAGE)
    files = _audio_files(data)
    sets = list(set_ or [])
    sets += [f"{key}={value}" for key, value in (
        ("model.depth", depth), ("num_mel_bins", mel_bins), ("target_length", length)) if value is not None]
    options = list(data_option or [])
    if not any(option.startswith(("valid=", "valid_fraction=")) for option in options):
        options.append(f"valid_fraction={DEFAULT_VALID_FRACTION}")
    base = build_recipe(recipe, {**given(ctx), "dataset": "manifest", "data_option": options,
                                 "set_": sets})
    run_dir = out or _default_out()
    result, failed = guarded(lambda observer: run_distill(
        base, run_dir, teacher=teacher, files=files, runtime=run, observer=observer), quiet=quiet)
    for file, reason in failed:
        console.print(f"skipped {file}: {reason}", highlight=False, markup=False, soft_wrap=True)
    report_run(result.summary)


def _audio_files(data: list[Path]) -> list[str]:
    """The recordings DATA names: one manifest's paths, or files and folders of audio."""
    from ..audio import find_audio
    from ..datasets import load_dataset

    if len(data) == 1 and data[0].suffix.lower() in (".csv", ".jsonl", ".ndjson"):
        try:
            splits = load_dataset("manifest", data[0])
        except user_errors() as e:
            fail(str(e), code=EXIT_USAGE)
        return [str(example.path) for example in splits.train]
    files = find_audio([str(p) for p in data], recursive=True)
    if not files:
        fail(f"no audio files in {', '.join(map(str, data))}", code=EXIT_USAGE)
    return files


def _default_out() -> Path:
    import time

    return Path("runs") / f"distill-{time.strftime('%Y%m%d-%H%M%S')}"
