"""`asttag tag`: tag recordings of any length.

Parses and validates options, expands inputs, picks where results go (stdout as they come, one
file assembled from a resume journal, or one file per input) and shows progress on stderr. The
tagging itself is `asttag.tagger.Tagger`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional

import typer

from ..choices import AGGREGATES, PADS, TAG_PRECISIONS
from ..names import display_name
from ..writers import WRITERS, format_for
from .app import EXIT_FAILED, EXIT_OK, EXIT_USAGE, app, console, error, fail, stdout_fault
from .options import (
    COUNT,
    DEVICE,
    SCORE,
    SECONDS,
    AggregateName,
    Device,
    FormatName,
    PadName,
    TagPrecision,
    number,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from ..runs import JobError, JobPlan
    from ..tagger import TagFailure, Tagger, TagResult


def _usage(message: str) -> NoReturn:
    fail(message, code=EXIT_USAGE)


def _default_format(output: str | None, output_dir: Path | None) -> str:
    if output and output != "-":
        return format_for(output) or "csv"
    if output is None and output_dir is None and sys.stdout.isatty():
        return "table"
    return "csv"  # a pipe or a file: something a program can read


def _read_inputs(specs: list[str], *, recursive: bool) -> list[str]:
    from ..audio import find_audio

    expanded: list[str] = []
    for spec in specs:
        if spec == "-":  # `find . -name '*.flac' | asttag tag -`
            # Bytes, decoded as the OS decodes names, so that any name on disk comes through.
            expanded.extend(os.fsdecode(line.rstrip(b"\r\n")) for line in sys.stdin.buffer
                            if line.strip())
        else:
            expanded.append(spec)
    return find_audio(expanded, recursive=recursive)


def _label_keys(values: list[str], label_set) -> list[str]:
    """Each value is a label (names may hold commas) or a comma-separated list of labels."""
    keys: list[str] = []
    for value in values:
        try:
            label_set.index(value)
            keys.append(value)
        except KeyError:
            keys.extend(part.strip() for part in value.split(",") if part.strip())
    return keys


class _Progress:
    """Files done, audio hours done and speed on stderr; paused while stdout gets data.

    It is the job's observer (asttag.runs.JobObserver: not subclassed, that would import torch
    with this module): it draws progress and reports each failed file as it comes.
    """

    def __init__(self, *, enabled: bool, doing: str = "tagging", done: str = "tagged") -> None:
        self.done_word = done
        self.explain: Callable[[TagResult], str | None] | None = None  # says why a file gave nothing
        self.picture: Callable[[TagResult], object] | None = None  # draws each result (--plot)
        self.plan: JobPlan | None = None
        self.files = 0
        self.failures = 0
        self.seconds = 0.0
        self.started = time.perf_counter()
        self._bar: Progress | None = None
        if enabled:
            from rich import progress as rp

            self._bar = rp.Progress(
                rp.TextColumn(doing), rp.BarColumn(), rp.MofNCompleteColumn(),
                rp.TextColumn("files"), rp.TextColumn("{task.fields[audio]}"),
                rp.TextColumn("{task.fields[speed]}"), rp.TimeElapsedColumn(), console=console,
                transient=True, redirect_stdout=False, redirect_stderr=False,
            )
            self._task = self._bar.add_task(doing, total=None, audio="", speed="")
            self._bar.start()

    # The job calls these (see asttag.runs.JobObserver).
    def planned(self, plan: JobPlan) -> None:
        self.plan = plan
        for stale in plan.stale:
            _note(f"ignoring {stale}: written with other options")
        if plan.damaged:
            _note(f"warning: {plan.journal}: dropped {plan.damaged} damaged entr"
                  f"{'y' if plan.damaged == 1 else 'ies'}; their files are tagged again")
        if plan.resumed:
            _note(f"resuming from {plan.journal}: {plan.resumed} of {plan.files} file(s) "
                  "already done")
        if plan.skipped:
            _note(f"skipping {plan.skipped} input(s) whose output exists")
        if self._bar is not None:
            self._bar.update(self._task, total=plan.todo)

    @property
    def speed(self) -> float:
        return self.seconds / max(time.perf_counter() - self.started, 1e-9)

    def audio(self, seconds: float) -> None:
        self.seconds += seconds
        self._refresh()

    def done(self, result: TagResult) -> None:
        self.files += 1
        if self.explain is not None and (why := self.explain(result)):
            _note(why)
        if self.picture is not None:
            self.picture(result)
        self._refresh()

    def failed(self, failure: TagFailure) -> None:
        self.files += 1
        self.failures += 1
        _report_failure(failure)
        self._refresh()

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.files, audio=f"{self.seconds / 3600:.2f} h audio",
                             speed=f"{self.speed:.1f}x real time")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Lift the live display while data goes to a terminal's stdout, then draw it again."""
        if self._bar is None or not sys.stdout.isatty():
            yield
            return
        self._bar.stop()
        try:
            yield
        finally:
            self._bar.start()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def summary(self) -> str:
        elapsed = time.perf_counter() - self.started
        text = (f"{self.done_word} {self.files - self.failures} file(s), {self.seconds / 3600:.3f} h of audio, "
                f"in {elapsed:.1f} s ({self.speed:.1f}x real time)")
        return text + (f"; {self.failures} failed" if self.failures else "")


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


def _note(text: str) -> None:
    """A line for people on stderr; paths in it are not Rich markup, and it stays one line."""
    console.print(display_name(text), markup=False, highlight=False, soft_wrap=True)


def _report_failure(failure: TagFailure) -> None:
    error(f"{failure.path}: {failure.reason}")


class _PausedStdout:
    """stdout for the job's data: the live display steps aside while a result is written."""

    def __init__(self, progress: _Progress) -> None:
        self.progress = progress

    def write(self, text: str) -> int:
        with self.progress.paused():
            return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _steady_heap() -> None:
    """Keep a long run's memory flat under glibc.

    glibc raises its mmap threshold each time a large buffer is freed; after that, audio blocks
    and features come from the heap and fragment it, and a 48 kHz stereo run grows by about a
    quarter an hour. A fixed 1 MiB threshold sends them back to mmap, returned on free. A value
    the user set (MALLOC_MMAP_THRESHOLD_) wins.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to tune
    m_mmap_threshold = -3  # from malloc.h
    libc.mallopt(m_mmap_threshold, 1 << 20)


def _interrupted(progress: _Progress, *, to_stdout: bool, output_dir: Path | None) -> NoReturn:
    """Ctrl-C: say what was kept and how to go on, and exit 130 (128 + SIGINT), as shells do."""
    done = f"{progress.files - progress.failures} file(s) {progress.done_word}"
    if progress.plan is not None and progress.plan.journal is not None:
        kept = (f"{done} now and {progress.plan.resumed} before are kept in "
                f"{progress.plan.journal}; run the same command again to go on from there")
    elif output_dir is not None:
        kept = (f"the outputs of {done} are in {output_dir}; run the same command with "
                "--skip-existing to go on")
    elif to_stdout:
        kept = f"{done} went to stdout; nothing else was kept"
    else:
        kept = f"{done}; nothing was kept"
    error(f"interrupted: {kept}")
    raise typer.Exit(130)


# The core's choices as the help shows them.
_FORMATS = ", ".join(WRITERS)
_AGGREGATES, _PADS, _PRECISIONS = ("|".join(c) for c in (AGGREGATES, PADS, TAG_PRECISIONS))

# How the job's arguments are spelled on this command line.
_FLAGS = {"output": "-o/--output", "output_dir": "--output-dir", "errors_log": "--errors-log",
          "paths": "INPUT", "skip_existing": "--skip-existing"}


def _job_usage(error: JobError) -> NoReturn:
    """A job the core refused, told in this command's words: the flag, or the variable's value."""
    if error.parameter in _FLAGS:
        _usage(f"{error} ({_FLAGS[error.parameter]})")
    _usage(f"{error.parameter}={os.environ.get(error.parameter, '')}: {error} (set by torchrun)")


def _picture_paths(paths: list[str], directory: Path) -> dict[Path, Path]:
    """Where --plot draws each input; what cannot be drawn is refused before any work."""
    from ..plot import PlotError, picture_paths, require_matplotlib

    try:
        require_matplotlib()
        return picture_paths(paths, directory=directory)
    except PlotError as e:
        fail(str(e))
    except ValueError as e:
        _usage(str(e))


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
    aggregate: Optional[AggregateName] = typer.Option(
        None, "--aggregate", metavar=_AGGREGATES,
        help="How clip tags combine windows (default: max for multi-label models, else mean)."),
    window: Optional[float] = typer.Option(
        None, "--window", parser=SECONDS, metavar="SECONDS",
        help="Window length in seconds (default: the model's input length)."),
    hop: Optional[float] = typer.Option(
        None, "--hop", parser=SECONDS, metavar="SECONDS",
        help="Seconds between window starts (default: the window length)."),
    pad: PadName = typer.Option(
        "zero", "--pad", metavar=_PADS,
        help="Fill short clips and the last window with zeros or by repeating."),
    device: Device = DEVICE,
    precision: TagPrecision = typer.Option(
        "fp32", "--precision", metavar=_PRECISIONS,
        help="fp32, bf16, fp16 (CUDA) or int8 (CPU)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", "-b", parser=COUNT, metavar="N",
        help="Windows per forward pass (default: 32 on CUDA; on a CPU 8 for full-size models, "
             "up to 64 for smaller inputs)."),
    threads: Optional[int] = typer.Option(
        None, "--threads", parser=COUNT, metavar="N",
        help="CPU threads for the model (default: torch's, one per core)."),
    workers: int = typer.Option(
        1, "--workers", "-j", parser=number(whole=True, at_least=0), metavar="N",
        help="Processes decoding and computing features while the model runs (0: in turn)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    errors_log: Optional[Path] = typer.Option(
        None, "--errors-log", metavar="FILE", help="Write the failed files and why, one per line (path TAB reason)."),
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
        _usage("give -o/--output or --output-dir, not both")
    if segments and events:
        _usage("give --segments or --events, not both")
    if skip_existing and output_dir is None:
        _usage("--skip-existing needs --output-dir (a run with -o FILE resumes by itself)")
    to_stdout = output_dir is None and (output is None or output == "-")
    try:
        shard = Shard.from_environment()
        check_destinations(output=None if to_stdout else output, output_dir=output_dir,
                           errors_log=errors_log, shard=shard)
    except JobError as e:
        _job_usage(e)
    format_name = fmt or _default_format(output, output_dir)
    mode = "events" if events else "segments" if segments else "tags"

    paths = _read_inputs(inputs, recursive=recursive)
    if not paths:
        _usage("no audio files found in the inputs given")
    from ..writers import make_writer

    writer = make_writer(format_name, mode=mode, color=sys.stdout.isatty(),
                         width=shutil.get_terminal_size().columns if sys.stdout.isatty() else 120)
    if writer.per_recording and len(paths) > 1 and output_dir is None:
        _usage(f"{format_name} output describes one recording: with several inputs use --output-dir")
    pictures = _picture_paths(paths, plot_dir) if plot_dir is not None else None

    import torch

    from ..checkpoint import CheckpointError
    from ..device import resolve_device
    from ..hub import HubError, load_model
    from ..runs import tag_files
    from ..tagger import Tagger

    _steady_heap()
    if threads:
        torch.set_num_threads(threads)
    try:
        target = resolve_device(shard.device(device))
    except ValueError as e:
        _usage(str(e))
    try:
        net = load_model(model, device="cpu")
    except (CheckpointError, HubError) as e:
        fail(str(e))
    try:
        tagger = Tagger(
            net, device=target, precision=precision,
            batch_size=batch_size, window=window, hop=hop,
            pad=pad, aggregate=aggregate, top_k=top,
            threshold=threshold, labels=_label_keys(labels, net.labels) if labels else None,
            workers=workers,
        )
    except ValueError as e:
        _usage(str(e))
    # A live bar only where someone watches it; one per job, not one per rank.
    progress = _Progress(enabled=not quiet and shard.rank == 0 and console.is_terminal)
    if not quiet:
        progress.explain = lambda result: _nothing_passed(tagger, mode, result)
    if pictures is not None:
        progress.picture = _drawer(tagger, pictures)
    try:
        result = tag_files(
            tagger, paths, writer=writer, stream=_PausedStdout(progress) if to_stdout else None,
            output=None if to_stdout or output_dir is not None else output, output_dir=output_dir,
            skip_existing=skip_existing, model=model, errors_log=errors_log, shard=shard,
            observer=progress,
        )
    except JobError as e:
        _job_usage(e)
    except OSError as e:  # an output that takes no more: a full disk, a read-only file system
        if to_stdout and e.filename is None:
            stdout_fault(e)
        fail(e)
    except KeyboardInterrupt:
        progress.close()
        _interrupted(progress, to_stdout=to_stdout, output_dir=output_dir)
    finally:
        progress.close()
    if not quiet:
        prefix = f"rank {shard.rank}: " if shard.world > 1 else ""
        _note(prefix + progress.summary())
    raise typer.Exit(EXIT_FAILED if result.failures else EXIT_OK)
