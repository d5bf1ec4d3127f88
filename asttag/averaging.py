"""Weight averaging: the arithmetic mean of compatible checkpoints, as the AST recipes use it.

The paper's best single models average the weights of several epochs of one run (AudioSet full:
epochs 1-5, 0.448 -> 0.459 mAP). Members are chosen from a list, a glob or a training run
directory (`checkpoints/epoch_NNN.safetensors`, see rundir.py; each with {"epoch", "metrics"} in its extra
metadata), by an epoch window or by the best N on a stored metric.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import sha256_file
from .checkpoint import load, load_state, read_metadata, save
from .model import AST, compatibility_problems
from .rundir import CHECKPOINT_GLOB, RunDirectory

__all__ = [
    "AveragingError",
    "Candidate",
    "AverageResult",
    "expand_sources",
    "select_window",
    "select_top",
    "average_checkpoints",
    "write_average",
]


class AveragingError(ValueError):
    """Checkpoints that cannot be averaged, or a selection that picks none: the message says why."""


@dataclass(frozen=True)
class Candidate:
    """A checkpoint that may be averaged, with the training facts stored in it."""

    path: Path
    epoch: int | None
    metrics: dict

    def record(self) -> dict:
        """What the averaged checkpoint remembers about this member."""
        return {"path": str(self.path), "epoch": self.epoch, "metrics": self.metrics}


@dataclass(frozen=True)
class AverageResult:
    path: Path
    sha256: str
    members: tuple[Candidate, ...]


def expand_sources(sources: Sequence[str | Path]) -> list[Candidate]:
    """Checkpoints named by files, glob patterns or run directories, in a stable order.

    A run directory stands for its checkpoints/epoch_*.safetensors. Training facts come from
    each file's metadata; files of other formats (official .pth) carry none.
    """
    paths: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found = RunDirectory(path).checkpoints()
            if not found:
                raise AveragingError(f"{path}: a directory without {CHECKPOINT_GLOB}")
        elif path.exists():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(str(path)))
            if not found:
                raise AveragingError(f"{source}: no such file, and no file matches it as a pattern")
        paths.extend(p for p in found if p not in paths)
    return [_candidate(p) for p in paths]


def _candidate(path: Path) -> Candidate:
    if path.suffix != ".safetensors":
        return Candidate(path, None, {})
    extra = read_metadata(path)["extra"]
    epoch = extra.get("epoch")
    metrics = dict(extra.get("metrics") or {})
    return Candidate(path, int(epoch) if epoch is not None else None, metrics)


def select_window(
    candidates: Sequence[Candidate], *, first: int | None = None, last: int | None = None
) -> list[Candidate]:
    """The checkpoints of epochs first..last (inclusive; open ends reach the stored extremes).

    Every epoch of the window must be present exactly once: an average over a window with holes
    or with two runs mixed in is not the one asked for.
    """
    unknown = [str(c.path) for c in candidates if c.epoch is None]
    if unknown:
        raise AveragingError(f"no epoch stored in {', '.join(unknown)}: cannot select by epoch")
    dated = [(c.epoch, c) for c in candidates if c.epoch is not None]  # every one (checked above)
    epochs = [epoch for epoch, _ in dated]
    first = min(epochs) if first is None else first
    last = max(epochs) if last is None else last
    if first > last:
        raise AveragingError(f"empty epoch window {first}..{last}")
    chosen = sorted(((e, c) for e, c in dated if first <= e <= last), key=lambda pair: pair[0])
    twice = sorted({e for e, _ in chosen if epochs.count(e) > 1})
    if twice:
        raise AveragingError(
            f"epoch(s) {', '.join(map(str, twice))} stored in more than one checkpoint"
        )
    missing = sorted(set(range(first, last + 1)) - {e for e, _ in chosen})
    if missing:
        have = ", ".join(map(str, sorted(epochs)))
        raise AveragingError(
            f"no checkpoint for epoch(s) {', '.join(map(str, missing))} of the window "
            f"{first}..{last} (epochs present: {have})"
        )
    return [c for _, c in chosen]


def select_top(candidates: Sequence[Candidate], n: int, *, metric: str) -> list[Candidate]:
    """The `n` checkpoints best on a stored `metric`, in the order given on ties.

    Higher is better, except for losses (a metric whose name ends in "loss").
    """
    if n < 1:
        raise AveragingError(f"the number of best checkpoints to keep must be at least 1, got {n}")
    # Unvalidated epochs store None for the metrics they could not compute.
    lacking = [str(c.path) for c in candidates if c.metrics.get(metric) is None]
    if lacking:
        stored = sorted({k for c in candidates for k in c.metrics})
        raise AveragingError(
            f"metric {metric!r} is not stored in {', '.join(lacking)} "
            f"(metrics stored: {', '.join(stored) or 'none'})"
        )
    if n > len(candidates):
        raise AveragingError(f"the {n} best checkpoints asked for, but only {len(candidates)} given")
    sign = 1.0 if metric.endswith("loss") else -1.0
    return sorted(candidates, key=lambda c: sign * float(c.metrics[metric]))[:n]


def average_checkpoints(paths: Iterable[str | Path]) -> AST:
    """The `AST` whose weights are the element-wise mean of the checkpoints at `paths`.

    Checkpoints are loaded one at a time and summed in float64, so memory holds one model and
    one accumulator whatever the count; the mean is cast back to each tensor's stored dtype.
    The result carries the first checkpoint's config, features and labels.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise AveragingError("nothing to average: no checkpoints selected")
    first = load(paths[0])
    total = {k: v.to(torch.float64) for k, v in first.state_dict().items()}
    for path in paths[1:]:
        model = load(path)
        problems = compatibility_problems(first, model)
        if problems:
            raise AveragingError(
                f"{path} cannot be averaged with {paths[0]}: " + "; ".join(problems)
            )
        for key, value in model.state_dict().items():
            total[key] += value.to(torch.float64)
        del model
    stored = first.state_dict()
    mean = {k: (v / len(paths)).to(stored[k].dtype) for k, v in total.items()}
    load_state(first, mean, source="average")
    return first


def write_average(
    candidates: Sequence[Candidate], out: str | Path, *, force: bool = False
) -> AverageResult:
    """Average `candidates` into the asttag checkpoint `out`; its extra lists the members."""
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; force=True overwrites it")
    model = average_checkpoints(c.path for c in candidates)
    save(model, out, extra={"averaged_from": [c.record() for c in candidates]})
    return AverageResult(out, sha256_file(out), tuple(candidates))
