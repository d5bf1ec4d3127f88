"""Speech Commands v0.02 as released: one folder per word, validation_list.txt, testing_list.txt.

Folders whose names start with `_` (`_background_noise_`) or `.` are not classes. Training data is
every clip in a word folder that neither list names; the classes are the word folders found,
sorted, which for the real release is `asttag.labels.speech_commands()`.
"""

from __future__ import annotations

from pathlib import Path

from ..labels import LabelSet
from .base import (
    DatasetError,
    DatasetSplits,
    Example,
    check_files_exist,
    class_folders,
    read_text,
)

VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"


def load(root: str | Path) -> DatasetSplits:
    """Speech Commands with its official validation and test lists."""
    root = Path(root).expanduser()
    words = class_folders(root, skip_prefixes=("_", "."))
    labels = LabelSet.from_names(list(words), multi_label=False)
    index = {word: i for i, word in enumerate(words)}
    valid = _listed(root / VALIDATION_LIST, root, index)
    test = _listed(root / TESTING_LIST, root, index)
    held_out = {e.path for e in valid} | {e.path for e in test}
    train = [
        Example(path, (index[word],))
        for word, paths in words.items()
        for path in paths
        if path not in held_out
    ]
    if not train:
        raise DatasetError(
            f"{root}: every clip is in the validation or test list; no training data"
        )
    return DatasetSplits(labels, train, valid, test)


def _listed(list_file: Path, root: Path, index: dict[str, int]) -> list[Example]:
    """The clips a split list names (paths relative to `root`, the word folder first)."""
    examples = []
    text = read_text(list_file, "Speech Commands split list")
    for line_number, line in enumerate(text.splitlines(), start=1):
        relative = line.strip()
        if not relative:
            continue
        word = relative.split("/", 1)[0]
        if word not in index or "/" not in relative:
            raise DatasetError(
                f"{list_file}:{line_number}: {relative!r} is not a clip inside a word folder"
            )
        examples.append(Example(root / relative, (index[word],)))
    check_files_exist(examples, list_file)
    return examples
