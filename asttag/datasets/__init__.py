"""Data-set readers: one module per layout, all returning the same plain `DatasetSplits`.

    splits = load_dataset("esc50", "/data/ESC-50-master", fold=3)
    splits.labels, splits.train[0].path, target_vector(splits.train[0], len(splits.labels))

No torch and no audio decoding here; every reader checks the layout and that the files it lists
exist, and raises `DatasetError` (a ValueError) naming the file or row otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import audioset, esc50, folder, manifest, speechcommands
from .base import (
    AUDIO_EXTENSIONS,
    DatasetError,
    DatasetSplits,
    Example,
    call_reader,
    target_vector,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "DATASETS",
    "DatasetError",
    "DatasetSplits",
    "Example",
    "detect_layout",
    "load_dataset",
    "target_vector",
]

DATASETS: dict[str, Callable[..., DatasetSplits]] = {
    "esc50": esc50.load,
    "speechcommands": speechcommands.load,
    "audioset": audioset.load,
    "folder": folder.load,
    "manifest": manifest.load,
}


def detect_layout(root: str | Path) -> str:
    """The layout (a key of DATASETS) of the data at `root`, from the files each layout holds.

    A .json file is an AST manifest (audioset), another file a manifest; a folder without the
    files of ESC-50, Speech Commands or AudioSet is a folder of class folders.
    """
    root = Path(root)
    if root.is_file():
        return "audioset" if root.suffix.lower() == ".json" else "manifest"
    if (root / "meta" / "esc50.csv").is_file():
        return "esc50"
    if (root / "validation_list.txt").is_file() and (root / "testing_list.txt").is_file():
        return "speechcommands"
    if (root / "eval_segments.csv").is_file():
        return "audioset"
    return "folder"


def load_dataset(name: str, root: str | Path, **options: object) -> DatasetSplits:
    """Read the data set `name` (a key of DATASETS, or auto: `detect_layout`) at `root`;
    options go to its reader."""
    if name == "auto":
        name = detect_layout(root)
    try:
        reader = DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown data set layout {name!r}; known: {', '.join(DATASETS)}"
        ) from None
    return call_reader(reader, root, options, name)
