"""What callers give the training engine and get back: how to run, the hooks, the results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..choices import DEFAULT_DEVICE

if TYPE_CHECKING:
    import torch

    from ..recipes import Recipe

__all__ = ["TrainingError", "Runtime", "Observer", "TargetSource", "RunResult", "CrossValidation"]


class TrainingError(RuntimeError):
    """A run that cannot start or go on: the message says what to change."""


@dataclass(frozen=True)
class Runtime:
    """How to run, as opposed to what to learn: may differ when a run is resumed.

    device: 'auto', 'cpu', 'cuda' or 'cuda:N' (under torchrun each process takes its
    LOCAL_RANK's GPU). workers: DataLoader processes. cache: a folder for decoded clips and
    log-mel frames, so later epochs skip decoding.
    """

    device: str = DEFAULT_DEVICE
    workers: int = 0
    cache: Path | None = None


class Observer:
    """Told how training goes (main process only); the CLI draws progress from it.

    Every method does nothing here: subclass and override what you need.
    """

    def run_started(self, run_dir: Path, recipe: Recipe, *, first_epoch: int) -> None: ...

    def epoch_started(self, epoch: int, *, epochs: int, steps: int) -> None: ...

    def step_done(self, loss: float) -> None: ...

    def validating(self, what: str) -> None: ...

    def epoch_done(self, record: dict) -> None: ...


class TargetSource(Protocol):
    """Where training targets come from, batch by batch: the hook a teacher model plugs into.

    Called with the model's input batch (augmented, normalised) and the data's targets (as
    mixup left them; soft scores where examples carry them); returns the targets to train on.
    """

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class RunResult:
    """A finished run: its directory and the contents of its summary.json."""

    run_dir: Path
    summary: dict

    @property
    def best_score(self) -> float | None:
        return self.summary["best"]["score"]

    @property
    def last_score(self) -> float | None:
        return self.summary["last"]["score"]


@dataclass(frozen=True)
class CrossValidation:
    """Runs over several folds, each held out in turn; `summary` has the mean and std."""

    run_dir: Path
    folds: dict[int, RunResult]
    summary: dict
