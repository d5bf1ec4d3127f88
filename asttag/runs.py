"""Whole jobs, as the command line runs them, one call each from Python.

`tag_files` tags many files into a stream, into one output file (resumable: see asttag.journal)
or into a directory of per-file outputs, sharded over torchrun's processes (`Shard`). Tagging
never imports the training engine (nor scikit-learn, which it loads: 1.7 s of every `asttag
tag`); resuming a training run is `asttag.training.resume_training`.

    shard = Shard.from_environment()         # RANK and WORLD_SIZE, checked
    tagger = Tagger(load_model("default"), device=shard.device("auto"))
    result = tag_files(tagger, find_audio(["recordings/"]), writer=make_writer("csv"),
                       output="tags.csv", model="default", shard=shard)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from ._version import __version__
from .atomic import atomic_write_text
from .journal import Journal, input_key, run_key
from .names import display_name
from .tagger import TagFailure, Tagger, TagResult
from .writers import StreamOutput, TextStream, Writer, output_path, write_file

__all__ = [
    "JobError",
    "Shard",
    "JobPlan",
    "JobObserver",
    "JobResult",
    "check_destinations",
    "model_fingerprint",
    "tag_files",
]


class JobError(ValueError):
    """A job that cannot run as asked; `parameter` names the argument (or variable) at fault."""

    def __init__(self, message: str, *, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class Shard:
    """This process's part of a job: of the inputs, those at rank, rank + world, ..."""

    rank: int = 0
    world: int = 1
    local_rank: int | None = None  # the process's index on its machine: its GPU

    def __post_init__(self) -> None:
        if self.world < 1:
            raise JobError(f"world size {self.world}: must be at least 1", parameter="WORLD_SIZE")
        if not 0 <= self.rank < self.world:
            raise JobError(f"rank {self.rank} of a world of {self.world}: must be from 0 to "
                           f"{self.world - 1}", parameter="RANK")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Shard:
        """The shard torchrun gives this process (RANK, WORLD_SIZE, LOCAL_RANK); one process
        alone when they are not set."""
        def number(name: str, default: int | None) -> int | None:
            text = environ.get(name)
            if text is None:
                return default
            try:
                return int(text)
            except ValueError:
                raise JobError(f"{text!r} is not a whole number", parameter=name) from None

        rank, world = number("RANK", 0), number("WORLD_SIZE", 1)
        assert rank is not None and world is not None
        return cls(rank=rank, world=world, local_rank=number("LOCAL_RANK", None))

    def files(self, paths: Sequence[str]) -> list[str]:
        return list(paths[self.rank::self.world])

    def device(self, device: str) -> str:
        """`device`, with auto meaning this process's own GPU under torchrun."""
        if device == "auto" and self.local_rank is not None:
            import torch  # only under torchrun: a lone process tags without importing torch

            if torch.cuda.is_available():
                return f"cuda:{self.local_rank}"
        return device


@dataclass(frozen=True)
class JobPlan:
    """What this process is about to do, told before the first file is tagged."""

    files: int  # this process's share of the inputs
    todo: int  # of those, the files it tags now
    skipped: int = 0  # with skip_existing: files whose output exists
    resumed: int = 0  # files an earlier run already recorded in the journal
    journal: Path | None = None
    stale: list[Path] = field(default_factory=list)  # journals of other options, not used
    damaged: int = 0  # journal entries that were damaged, dropped: their files are tagged again
    paths: list[str] = field(default_factory=list)  # the files it tags now, in order


class JobObserver:
    """What a tagging job reports while it runs; every method does nothing by default."""

    def planned(self, plan: JobPlan) -> None: ...

    def audio(self, seconds: float) -> None:
        """Seconds of audio newly covered."""

    def done(self, result: TagResult) -> None:
        """One file tagged, its result written."""

    def failed(self, failure: TagFailure) -> None:
        """One file that could not be tagged (the job goes on with the others)."""


@dataclass(frozen=True)
class JobResult:
    tagged: int
    failures: list[TagFailure]


def model_fingerprint(model: str) -> str:
    """What names a model in a resume journal: a file's path, size and time, or the name."""
    return input_key(model) if Path(model).exists() else model


def _rank_suffixed(path: Path, shard: Shard) -> Path:
    return path if shard.world == 1 else path.with_name(f"{path.stem}.rank{shard.rank}{path.suffix}")


def check_destinations(
    *,
    output: str | Path | None = None,
    output_dir: str | Path | None = None,
    errors_log: str | Path | None = None,
    shard: Shard = Shard(),
) -> None:
    """Refuse, before any work, outputs that cannot be written (JobError naming the argument)."""
    if output is not None and output_dir is not None:
        raise JobError("give an output file or an output directory, not both", parameter="output")
    if shard.world > 1 and output is None and output_dir is None:
        raise JobError(f"a job sharded over {shard.world} processes writes to an output file "
                       "(merged by rank 0) or an output directory", parameter="output")
    for name, value in (("output", output), ("errors_log", errors_log)):
        if value is None:
            continue
        if str(value) == "":
            raise JobError("an empty path names no file", parameter=name)
        if Path(value).is_dir():
            raise JobError(f"{value}: is a directory", parameter=name)
    if output_dir is not None:
        if str(output_dir) == "":
            raise JobError("an empty path names no directory", parameter="output_dir")
        if Path(output_dir).exists() and not Path(output_dir).is_dir():
            raise JobError(f"{output_dir}: not a directory", parameter="output_dir")


def tag_files(
    tagger: Tagger,
    paths: Sequence[str],
    *,
    writer: Writer,
    stream: TextStream | None = None,
    output: str | Path | None = None,
    output_dir: str | Path | None = None,
    skip_existing: bool = False,
    model: str | None = None,
    errors_log: str | Path | None = None,
    shard: Shard = Shard(),
    observer: JobObserver | None = None,
) -> JobResult:
    """Tag `paths` into exactly one of: a text `stream` as results come, one `output` file, or
    `output_dir` (one file per input, its folders mirroring the inputs').

    An `output` file is assembled from a journal once every file is done; a job stopped before
    that resumes where it stopped when run again with the same options and `model` (the name
    or path it was loaded from). With `skip_existing`, inputs whose file in `output_dir` exists
    are left alone. Under torchrun (`shard`) each process tags its share and rank 0 merges an
    output file. `errors_log` receives `path TAB reason` per failed file (one log per rank).
    A file that fails is reported to the observer, and the job goes on with the others.
    """
    check_destinations(output=output, output_dir=output_dir, errors_log=errors_log, shard=shard)
    if sum(x is not None for x in (stream, output, output_dir)) != 1:
        raise JobError("give exactly one of a stream, an output file and an output directory",
                       parameter="output")
    if output is not None and model is None:
        raise JobError("a resumable output file needs the model's name or path", parameter="model")
    if skip_existing and output_dir is None:
        raise JobError("skipping existing outputs needs an output directory",
                       parameter="skip_existing")
    job = _Job(tagger, writer, observer or JobObserver())
    if output_dir is not None:
        _to_directory(job, paths, Path(output_dir), shard=shard, skip_existing=skip_existing)
    elif output is not None:
        assert model is not None
        run = run_key({**tagger.options(), "model": model_fingerprint(model),
                       "format": writer.name, "mode": writer.mode, "version": __version__})
        _to_file(job, paths, Path(output), run=run, shard=shard)
    else:
        assert stream is not None
        _to_stream(job, shard.files(paths), stream)
    if errors_log is not None:
        # One line per failure: names that hold newlines or undecodable bytes are escaped.
        atomic_write_text(_rank_suffixed(Path(errors_log), shard),
                          "".join(f"{display_name(f.path)}\t{display_name(f.reason)}\n"
                                  for f in job.failures))
    return JobResult(tagged=job.tagged, failures=job.failures)


class _Job:
    """Tags files, hands each result to a write function and tells the observer; counts."""

    def __init__(self, tagger: Tagger, writer: Writer, observer: JobObserver) -> None:
        self.tagger, self.writer, self.observer = tagger, writer, observer
        self.tagged = 0
        self.failures: list[TagFailure] = []

    def run(self, paths: list[str], write: Callable[[TagResult], None]) -> None:
        for outcome in self.tagger.tag_many(paths, progress=self.observer.audio):
            if isinstance(outcome, TagFailure):
                self.failures.append(outcome)
                self.observer.failed(outcome)
            else:
                write(outcome)
                self.tagged += 1
                self.observer.done(outcome)


def _to_stream(job: _Job, paths: list[str], stream: TextStream) -> None:
    job.observer.planned(JobPlan(files=len(paths), todo=len(paths), paths=paths))
    out = StreamOutput(stream, job.writer)
    job.run(paths, out.write)
    out.close()


def _to_directory(job: _Job, paths: Sequence[str], directory: Path, *, shard: Shard,
                  skip_existing: bool) -> None:
    # The root comes from every rank's inputs, so all ranks map files to the same places.
    root = Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths]))
    targets = {p: output_path(p, root=root, directory=directory, writer=job.writer) for p in paths}
    seen: dict[Path, str] = {}
    for source, target in targets.items():
        if target in seen:
            raise JobError(f"{seen[target]} and {source} would both write {target}: rename one, "
                           "or tag them in separate runs", parameter="paths")
        seen[target] = source
    share = shard.files(paths)
    todo = [p for p in share if not (skip_existing and targets[p].exists())]
    job.observer.planned(JobPlan(files=len(share), todo=len(todo), skipped=len(share) - len(todo),
                                 paths=todo))
    job.run(todo, lambda result: write_file(targets[result.path], job.writer, [result]))


def _to_file(job: _Job, paths: Sequence[str], output: Path, *, run: str, shard: Shard) -> None:
    keys = {p: input_key(p) for p in paths}
    journal = Journal(output, run=run, rank=shard.rank, world=shard.world)
    if shard.world > 1:
        from . import processgroup

        # Ranks wait for each other only at the end, before rank 0 merges: allow long runs.
        processgroup.join("gloo", timeout=timedelta(days=7))
    status = journal.start()  # JournalBusy while another job writes the same output
    try:
        share = shard.files(paths)
        todo = [p for p in share if not journal.done(keys[p])]
        job.observer.planned(JobPlan(files=len(share), todo=len(todo),
                                     resumed=len(share) - len(todo), journal=journal.path,
                                     stale=status.stale, damaged=status.damaged,
                                     paths=todo))
        job.run(todo, lambda result: journal.record(keys[result.path], result.path,
                                                    job.writer.chunk(result)))
        journal.close()
        if shard.world > 1:
            import torch.distributed as dist

            dist.barrier()  # every rank's journal is complete
        if shard.rank == 0:
            journal.assemble([keys[p] for p in paths], job.writer)
            journal.remove()
    finally:
        journal.release()
