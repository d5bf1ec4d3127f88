"""A folder with one subfolder per class (single-label), audio files inside at any depth.

Classes are the subfolder names, sorted; hidden folders are skipped. Audio files are those with a
suffix asttag decodes (`asttag.audio.AUDIO_SUFFIXES`: libsndfile's and FFmpeg's). A validation
split can be held out per class.
"""

from __future__ import annotations

from pathlib import Path

from ..labels import LabelSet
from .base import DatasetSplits, Example, class_folders, holdout


def load(root: str | Path, *, valid_fraction: float = 0.0, seed: int = 0) -> DatasetSplits:
    """The class folders under `root`; `valid_fraction` of each class held out when above 0."""
    classes = class_folders(Path(root).expanduser())
    labels = LabelSet.from_names(list(classes), multi_label=False)
    examples = [Example(path, (i,)) for i, paths in enumerate(classes.values()) for path in paths]
    if not valid_fraction:
        return DatasetSplits(labels, examples, [])
    train, valid = holdout(examples, valid_fraction, seed=seed)
    return DatasetSplits(labels, train, valid)
