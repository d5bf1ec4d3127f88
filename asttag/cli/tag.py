"""`asttag tag`: tag recordings of any length.

Parses and validates options, expands inputs, picks where results go (stdout as they come, one
file assembled from a resume journal, or one file per input) and shows progress on stderr. The
tagging itself is `asttag.tagger.Tagger`.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..choices import (
    AGGREGATES,
    PADS,
    RUNTIMES,
    TAG_PRECISIONS,
    Aggregate,
    Pad,
    Runtime,
    TagPrecision,
)
from ..writers import WRITERS, format_for
from .app import EXIT_FAILED, EXIT_OK, app, console, fail, stdout_fault
from .jobs import (
    JobProgress,
    PausedStdout,
    interrupted,
    job_usage,
    label_keys,
    note,
    read_inputs,
    tagging_model,
    usage,
)
from .options import (
    COUNT,
    DEVICE,
    SCORE,
    SECONDS,
    Device,
    ErrorsLog,
    FormatName,
    JobQuiet,
    JobWorkers,
    Threads,
)

if TYPE_CHECKING:

    from ..tagger import Tagger, TagResult


def _default_format(output: str | None, output_dir: Path | None) -> str:
    if output and output != "-":
        return format_for(output) or "csv"
    if output is None and output_dir is None and sys.stdout.isatty():
        return "table"
    return "csv"  # a pipe or a file: something a program can read


def _nothing_passed(tagger: Tagger, mode: str, result: TagResult) -> str | None:
    """Why a file gave no rows, when a threshold kept everything out: the best score seen."""
    if mode == "events":
        empty, bar, what = not result.events, tagger.event_threshold, "events"
    elif tagger.threshold is not None:
        empty, bar, what = not (result.segments if mode == "segments" else result.tags), \
            tagger.threshold, "segments" if mode == "segments" else "tags"
    else:
        return None
    if not empty:
        return None
    best = tagger.strongest(result, clip=what == "tags")
    where = "" if what == "tags" else f" at {best.start:.2f}-{best.end:.2f} s"
    source = "" if tagger.threshold is not None else f", {tagger.event_threshold_source.rule}"
    return (f"{result.path}: no {what} at or over the threshold {bar:g}{source}; the best score "
            f"was {best.score:.3f} ({best.label}{where}): a lower -t/--threshold lowers the bar")


# The core's choices as the help shows them.
_FORMATS = ", ".join(WRITERS)
_AGGREGATES, _PADS, _PRECISIONS, _RUNTIMES = (
    "|".join(c) for c in (AGGREGATES, PADS, TAG_PRECISIONS, RUNTIMES))

def _picture_paths(paths: list[str], directory: Path) -> dict[Path, Path]:
    """Where --plot draws each input; what cannot be drawn is refused before any work."""
    from ..plot import PlotError, picture_paths, require_matplotlib

    try:
        require_matplotlib()
        return picture_paths(paths, directory=directory)
    except PlotError as e:
        fail(str(e))
    except ValueError as e:
        usage(str(e))


def _drawer(tagger: Tagger, pictures: dict[Path, Path]) -> Callable[[TagResult], object]:
    from ..plot import draw_recording

    return lambda result: draw_recording(tagger, result, pictures[Path(result.path)])


@app.command()
def tag(
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT",
        help="Audio or video files (wav, flac, mp3, ogg, opus, m4a, mp4, mov, mkv, webm, ...: what "
             "libsndfile or FFmpeg reads), directories, glob patterns, or - to read paths from stdin."),
    model: str = typer.Option(
        "default", "--model", "-m", metavar="MODEL",
        help="A name from `asttag models list`, an asttag checkpoint, an official .pth file or a "
             "transformers directory."),
    fmt: Optional[FormatName] = typer.Option(
        None, "--format", "-f", metavar="FORMAT",
        help=f"Output format: {_FORMATS} (default: table on a terminal, else csv; "
             "with -o, from its suffix)."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="FILE", help="One output file for all inputs, resumable; - is stdout."),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", metavar="DIR", help="One output file per input, mirroring the input folders."),
    skip_existing: bool = typer.Option(
        False, "--skip-existing", help="With --output-dir: leave inputs whose output exists."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look inside sub-directories."),
    top: Optional[int] = typer.Option(
        None, "--top", "-k", parser=COUNT, metavar="K",
        help="Keep the K best labels (default: 5, or all over --threshold when one is given)."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", "-t", parser=SCORE, metavar="SCORE",
        help="Keep labels scoring at least this; events use it too (default for events: the "
             "model's recommended threshold, see `asttag models info`; 0.5 where it has none)."),
    labels: Optional[list[str]] = typer.Option(
        None, "--labels", "-l", metavar="LABEL", help="Only these labels (names, ids or indices; comma-separated "
                                     "or repeated)."),
    segments: bool = typer.Option(False, "--segments", help="One row per window and label."),
    events: bool = typer.Option(
        False, "--events", help="Consecutive windows over the threshold merged into events."),
    aggregate: Optional[Aggregate] = typer.Option(
        None, "--aggregate", metavar=_AGGREGATES,
        help="How clip tags combine windows (default: max for multi-label models, else mean)."),
    window: Optional[float] = typer.Option(
        None, "--window", parser=SECONDS, metavar="SECONDS",
        help="Window length in seconds (default: the model's input length)."),
    hop: Optional[float] = typer.Option(
        None, "--hop", parser=SECONDS, metavar="SECONDS",
        help="Seconds between window starts (default: the window length)."),
    pad: Pad = typer.Option(
        "zero", "--pad", metavar=_PADS,
        help="Fill short clips and the last window with zeros or by repeating."),
    device: Device = DEVICE,
    precision: TagPrecision = typer.Option(
        "fp32", "--precision", metavar=_PRECISIONS,
        help="fp32, bf16, fp16 (CUDA) or int8 (CPU)."),
    runtime: Runtime = typer.Option(
        "auto", "--runtime", metavar=_RUNTIMES,
        help="What runs the model: torch, or ONNX Runtime (CPU, fp32, asttag checkpoints; needs "
             "asttag[onnx]; starts 1.6 s sooner: no torch import). auto: ONNX Runtime where it "
             "can, the first use of a model exporting it into the cache once; else torch."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", "-b", parser=COUNT, metavar="N",
        help="Windows per forward pass (default: 32 on CUDA; on a CPU 8 for full-size models, "
             "up to 64 for smaller inputs)."),
    threads: Threads = None,
    workers: JobWorkers = 1,
    quiet: JobQuiet = False,
    errors_log: ErrorsLog = None,
    plot_dir: Optional[Path] = typer.Option(
        None, "--plot", metavar="DIR", help="Also draw each recording tagged as DIR/<name>.png, as `asttag plot` "
                             "does (needs asttag[plot])."),
) -> None:
    """Tag audio files of any length: clip tags, per-window segments or merged events.

    \b
    Examples:
      asttag tag recordings/*.wav --top 5
      asttag tag field/ -r --events -t 0.3 -o events.csv
      asttag tag podcast.mp3 --segments --hop 5.12 -f jsonl | jq
      find . -name '*.flac' | asttag tag - --output-dir tags/ -f raven
    """
    from ..runs import JobError, Shard, check_destinations

    if output is not None and output_dir is not None:
        usage("give -o/--output or --output-dir, not both")
    if segments and events:
        usage("give --segments or --events, not both")
    if skip_existing and output_dir is None:
        usage("--skip-existing needs --output-dir (a run with -o FILE resumes by itself)")
    to_stdout = output_dir is None and (output is None or output == "-")
    try:
        shard = Shard.from_environment()
        check_destinations(output=None if to_stdout else output, output_dir=output_dir,
                           errors_log=errors_log, shard=shard)
    except JobError as e:
        job_usage(e)
    format_name = fmt or _default_format(output, output_dir)
    mode = "events" if events else "segments" if segments else "tags"

    paths = read_inputs(inputs, recursive=recursive)
    if not paths:
        usage("no audio files found in the inputs given")
    from ..writers import make_writer

    writer = make_writer(format_name, mode=mode, color=sys.stdout.isatty(),
                         width=shutil.get_terminal_size().columns if sys.stdout.isatty() else 120)
    if writer.per_recording and len(paths) > 1 and output_dir is None:
        usage(f"{format_name} output describes one recording: with several inputs use --output-dir")
    pictures = _picture_paths(paths, plot_dir) if plot_dir is not None else None

    from ..runs import tag_files
    from ..tagger import Tagger

    net, target = tagging_model(model, device=device, threads=threads, shard=shard,
                                runtime=runtime, precision=precision, quiet=quiet)
    try:
        tagger = Tagger(
            net, device=target, precision=precision,
            batch_size=batch_size, window=window, hop=hop,
            pad=pad, aggregate=aggregate, top_k=top,
            threshold=threshold, labels=label_keys(labels, net.labels) if labels else None,
            workers=workers,
        )
    except ValueError as e:
        usage(str(e))
    # A live bar only where someone watches it; one per job, not one per rank.
    progress = JobProgress(enabled=not quiet and shard.rank == 0 and console.is_terminal)
    if not quiet:
        progress.explain = lambda result: _nothing_passed(tagger, mode, result)
    if pictures is not None:
        progress.picture = _drawer(tagger, pictures)
    try:
        result = tag_files(
            tagger, paths, writer=writer, stream=PausedStdout(progress) if to_stdout else None,
            output=None if to_stdout or output_dir is not None else output, output_dir=output_dir,
            skip_existing=skip_existing, model=model, errors_log=errors_log, shard=shard,
            observer=progress,
        )
    except JobError as e:
        job_usage(e)
    except OSError as e:  # an output that takes no more: a full disk, a read-only file system
        if to_stdout and e.filename is None:
            stdout_fault(e)
        fail(e)
    except KeyboardInterrupt:
        progress.close()
        interrupted(progress, to_stdout=to_stdout, output_dir=output_dir)
    finally:
        progress.close()
    if not quiet:
        prefix = f"rank {shard.rank}: " if shard.world > 1 else ""
        note(prefix + progress.summary())
    raise typer.Exit(EXIT_FAILED if result.failures else EXIT_OK)
