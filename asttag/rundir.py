"""The training run directory: which file holds what.

Training writes it; averaging, distillation, resume and the CLI read it, so the layout is public
and spelled here only:
  recipe.yaml                          the resolved recipe (all `resume` needs)
  metrics.jsonl                        one JSON line per completed epoch
  checkpoints/epoch_NNN.safetensors    the model after each epoch, extra {"epoch", "metrics", "recipe"}
  training_state.pt                    optimiser, step counter, loss scaler; written last, it
                                       marks an epoch complete
  best.safetensors                     the epoch that scored best on validation
  averaged.safetensors                 the mean of the recipe's epoch window (when it averages)
  summary.json                         the outcome, written when training ends
A cross-validation keeps one run directory per fold (fold_N) beside cross_validation.json; a
distillation adds teacher.json and windows/ (the cut recordings and their teacher scores).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .atomic import atomic_write_text

__all__ = [
    "RunDirectory",
    "fold_directory",
    "RECIPE_FILE",
    "METRICS_FILE",
    "STATE_FILE",
    "CHECKPOINTS",
    "CHECKPOINT_GLOB",
    "BEST_FILE",
    "AVERAGED_FILE",
    "SUMMARY_FILE",
    "CROSS_VALIDATION_FILE",
    "TEACHER_FILE",
    "WINDOW_DIR",
]

RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.jsonl"
STATE_FILE = "training_state.pt"
CHECKPOINTS = "checkpoints"
BEST_FILE = "best.safetensors"
AVERAGED_FILE = "averaged.safetensors"
SUMMARY_FILE = "summary.json"
CROSS_VALIDATION_FILE = "cross_validation.json"
TEACHER_FILE = "teacher.json"  # in a distillation run: which teacher, for resume
WINDOW_DIR = "windows"  # in a distillation run: the cut recordings and their teacher scores
CHECKPOINT_GLOB = f"{CHECKPOINTS}/epoch_*.safetensors"  # relative to the run directory


class RunDirectory:
    """One training run's folder (see the module's docstring for what it holds)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def new(cls, name: str) -> RunDirectory:
        """A folder not yet taken for a run of recipe `name`: runs/<name>-<time>[-N]."""
        base = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def checkpoint(self, epoch: int) -> Path:
        return self.path / CHECKPOINTS / f"epoch_{epoch:03d}.safetensors"

    def checkpoints(self) -> list[Path]:
        """The per-epoch checkpoints present, in epoch order."""
        return sorted(self.path.glob(CHECKPOINT_GLOB))

    def started(self) -> bool:
        return self.file(RECIPE_FILE).exists()

    def read_metrics(self) -> list[dict]:
        file = self.file(METRICS_FILE)
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text("utf-8").splitlines() if line.strip()]

    def write_metrics(self, records: list[dict]) -> None:
        atomic_write_text(self.file(METRICS_FILE), "".join(json.dumps(r) + "\n" for r in records))

    def write_json(self, name: str, data: dict) -> None:
        atomic_write_text(self.file(name), json.dumps(data, indent=2) + "\n")


def fold_directory(root: str | Path, fold: int) -> Path:
    """Where a cross-validation under `root` keeps the run of `fold`."""
    return Path(root) / f"fold_{fold}"
