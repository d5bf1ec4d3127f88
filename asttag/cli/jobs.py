"""What the commands that run over many recordings share (tag, embed, plot): reading the
inputs, choosing labels, progress on stderr, the job's usage errors and Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from ..names import display_name
from .app import EXIT_USAGE, console, error, fail

if TYPE_CHECKING:
    import torch
    from rich.progress import Progress

    from ..model import TaggingModel
    from ..runs import JobError, JobObserver, JobPlan, Shard
    from ..runtime import OnnxModel
    from ..tagger import TagFailure, TagResult
else:
    # The type checker holds JobProgress to the observer's methods; at run time asttag.runs
    # would import torch with this module, and the base adds nothing (its methods do nothing).
    JobObserver = object


def usage(message: str) -> NoReturn:
    fail(message, code=EXIT_USAGE)


def read_inputs(specs: list[str], *, recursive: bool) -> list[str]:
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


def label_keys(values: list[str], label_set) -> list[str]:
    """Each value is a label (names may hold commas) or a comma-separated list of labels."""
    keys: list[str] = []
    for value in values:
        try:
            label_set.index(value)
            keys.append(value)
        except KeyError:
            keys.extend(part.strip() for part in value.split(",") if part.strip())
    return keys


class JobProgress(JobObserver):
    """Files done, audio hours done and speed on stderr; paused while stdout gets data.

    It is the job's observer (asttag.runs.JobObserver): it draws progress and reports each
    failed file as it comes.
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
                rp.TextColumn(doing), rp.BarColumn(), rp.TaskProgressColumn(),
                rp.TextColumn("{task.fields[files]}"), rp.TextColumn("{task.fields[audio]}"),
                rp.TextColumn("{task.fields[speed]}"), rp.TimeElapsedColumn(),
                rp.TextColumn("left"), rp.TimeRemainingColumn(), console=console,
                transient=True, redirect_stdout=False, redirect_stderr=False,
            )
            self._task = self._bar.add_task(doing, total=None, files="", audio="", speed="")
            self._bar.start()
        self.total_seconds: float | None = None  # the audio to tag, from the headers, if known

    # The job calls these (see asttag.runs.JobObserver).
    def planned(self, plan: JobPlan) -> None:
        self.plan = plan
        for stale in plan.stale:
            note(f"ignoring {stale}: written with other options")
        if plan.damaged:
            note(f"warning: {plan.journal}: dropped {plan.damaged} damaged entr"
                  f"{'y' if plan.damaged == 1 else 'ies'}; their files are tagged again")
        if plan.resumed:
            note(f"resuming from {plan.journal}: {plan.resumed} of {plan.files} file(s) "
                  "already done")
        if plan.skipped:
            note(f"skipping {plan.skipped} input(s) whose output exists")
        if self._bar is not None:
            # The bar runs on audio when the headers give every duration, so that one long
            # file shows its share done and the time left; otherwise on files.
            if len(plan.paths) <= MAX_FILES_TIMED:
                self.total_seconds = header_seconds(plan.paths)
            self._bar.update(self._task, total=self.total_seconds or plan.todo)
            self._refresh()

    @property
    def speed(self) -> float:
        return self.seconds / max(time.perf_counter() - self.started, 1e-9)

    def audio(self, seconds: float) -> None:
        self.seconds += seconds
        self._refresh()

    def done(self, result: TagResult) -> None:
        self.files += 1
        if self.explain is not None and (why := self.explain(result)):
            note(why)
        if self.picture is not None:
            self.picture(result)
        self._refresh()

    def failed(self, failure: TagFailure) -> None:
        self.files += 1
        self.failures += 1
        report_failure(failure)
        self._refresh()

    def _refresh(self) -> None:
        if self._bar is None:
            return
        todo = self.plan.todo if self.plan else 0
        if self.total_seconds:
            audio = f"{clock(self.seconds)} of {clock(self.total_seconds)} audio"
            completed = min(self.seconds, self.total_seconds)
        else:
            audio, completed = f"{self.seconds / 3600:.2f} h audio", self.files
        self._bar.update(self._task, completed=completed, files=f"{self.files}/{todo} files",
                         audio=audio, speed=f"{self.speed:.1f}x real time")

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


# Reading a header costs about a millisecond: past this many files the bar counts files only.
MAX_FILES_TIMED = 1000


def header_seconds(paths: list[str]) -> float | None:
    """The audio in these files by their headers; None when a header does not say."""
    from ..audio import info

    total = 0.0
    for path in paths:
        try:
            found = info(path)
        except Exception:  # noqa: BLE001, S112 - the job reports its reason when it gets there
            continue
        if found.frames <= 0:
            return None
        total += found.duration
    return total


def clock(seconds: float) -> str:
    """h:mm:ss."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def note(text: str) -> None:
    """A line for people on stderr; paths in it are not Rich markup, and it stays one line."""
    console.print(display_name(text), markup=False, highlight=False, soft_wrap=True)


def report_failure(failure: TagFailure) -> None:
    error(f"{failure.path}: {failure.reason}")


class PausedStdout:
    """stdout for the job's data: the live display steps aside while a result is written."""

    def __init__(self, progress: JobProgress) -> None:
        self.progress = progress

    def write(self, text: str) -> int:
        with self.progress.paused():
            return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def steady_heap() -> None:
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


def job_model(model: str, *, device: str, threads: int | None = None,
              shard: Shard | None = None) -> tuple[TaggingModel, torch.device]:
    """The model a job runs with torch, loaded on the CPU, and the device it runs on (this
    rank's, under torchrun); steadies the heap and sets the CPU threads first. Exits on a bad
    model (1) or device (2)."""
    import torch

    from ..checkpoint import CheckpointError
    from ..device import resolve_device
    from ..hub import HubError, load_model

    steady_heap()
    if threads:
        torch.set_num_threads(threads)
    try:
        target = resolve_device(shard.device(device) if shard else device)
    except ValueError as e:
        usage(str(e))
    try:
        return load_model(model, device="cpu"), target
    except (CheckpointError, HubError) as e:
        fail(str(e))


def tagging_model(model: str, *, device: str, threads: int | None, shard: Shard, runtime: str,
                  precision: str, quiet: bool) -> tuple[TaggingModel | OnnxModel, torch.device | str]:
    """`job_model`, or with `runtime` "auto" or "onnxruntime" an `OnnxModel` wherever ONNX
    Runtime can run it (runtime.onnx_model), loaded without importing torch; a first use's
    export is told on stderr unless `quiet`. Exits on a bad model (1), runtime or device (2)."""
    from ..runtime import RuntimeChoiceError, onnx_model

    def announce(checkpoint: Path) -> None:
        if not quiet:
            note(f"{checkpoint}: exported for ONNX Runtime on first use, once "
                 "(a few seconds; later runs start without torch)")

    try:
        onnx = onnx_model(model, runtime=runtime, device=shard.device(device), precision=precision,
                          threads=threads, announce=announce)
    except RuntimeChoiceError as e:
        usage(str(e))
    except ValueError as e:
        from ..checkpoint import CheckpointError  # only a checkpoint being exported raises one

        if not isinstance(e, CheckpointError):
            raise
        fail(str(e))
    if onnx is None:
        return job_model(model, device=device, threads=threads, shard=shard)
    steady_heap()
    return onnx, "cpu"


def interrupted(progress: JobProgress, *, to_stdout: bool, output_dir: Path | None) -> NoReturn:
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


# How the job's arguments are spelled on this command line.
_FLAGS = {"output": "-o/--output", "output_dir": "--output-dir", "errors_log": "--errors-log",
          "paths": "INPUT", "skip_existing": "--skip-existing"}


def job_usage(error: JobError) -> NoReturn:
    """A job the core refused, told in this command's words: the flag, or the variable's value."""
    if error.parameter in _FLAGS:
        usage(f"{error} ({_FLAGS[error.parameter]})")
    usage(f"{error.parameter}={os.environ.get(error.parameter, '')}: {error} (set by torchrun)")
