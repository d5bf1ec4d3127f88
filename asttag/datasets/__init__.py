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


def load_dataset(name: str, root: str | Path, **options: object) -> DatasetSplits:
    """Read the data set `name` (a key of DATASETS) at `root`; options go to its reader."""
    try:
        reader = DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown data set layout {name!r}; known: {', '.join(DATASETS)}"
        ) from None
    return call_reader(reader, root, options, name)
