"""The plain structure every data-set reader returns, and the checks the readers share.

Readers only list files and targets: no torch, no audio decoding. The training engine wraps the
result in its own Dataset later.
"""

from __future__ import annotations

import csv
import inspect
import operator
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import AUDIO_SUFFIXES as AUDIO_EXTENSIONS
from ..labels import LabelSet, read_label_file

# How many names an error or note quotes before it only counts.
_QUOTED = 5


# Maps a label id or name to its class index; the second argument names the row for errors.
LabelLookup = Callable[[str, str], int]


class DatasetError(ValueError):
    """A data set that cannot be read: the message names the file or row and the problem."""


@dataclass(frozen=True, slots=True, eq=False)
class Example:
    """One clip: its file and either the indices of its positive classes or soft scores.

    `labels` is a sorted tuple of class indices (one for single-label data, any number for
    multi-label data). `soft` is a per-class score vector (distillation targets); an example
    carries one or the other, never both. Use `target_vector` to get either as one vector.
    """

    path: Path
    labels: tuple[int, ...] = ()
    soft: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__ so every Example compares the same way.
        object.__setattr__(self, "path", Path(self.path))
        labels = tuple(sorted({operator.index(i) for i in self.labels}))
        if labels and labels[0] < 0:
            raise ValueError(f"{self.path}: class indices must be >= 0, got {labels[0]}")
        object.__setattr__(self, "labels", labels)
        if self.soft is not None:
            if labels:
                raise ValueError(f"{self.path}: an example has labels or soft scores, not both")
            soft = np.array(self.soft, dtype=np.float32)
            if soft.ndim != 1:
                raise ValueError(f"{self.path}: soft scores must be 1-D, got shape {soft.shape}")
            soft.setflags(write=False)
            object.__setattr__(self, "soft", soft)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Example):
            return NotImplemented
        if (self.path, self.labels) != (other.path, other.labels):
            return False
        if self.soft is None or other.soft is None:
            return self.soft is other.soft
        return np.array_equal(self.soft, other.soft)

    def __hash__(self) -> int:
        return hash((self.path, self.labels))


def target_vector(example: Example, n_classes: int) -> np.ndarray:
    """The example's target as a float32 vector of `n_classes`: multi-hot labels or soft scores."""
    if example.soft is not None:
        if len(example.soft) != n_classes:
            raise ValueError(
                f"{example.path}: {len(example.soft)} soft scores for {n_classes} classes"
            )
        return example.soft.copy()
    if example.labels and example.labels[-1] >= n_classes:
        raise ValueError(
            f"{example.path}: class index {example.labels[-1]} is out of range for "
            f"{n_classes} classes"
        )
    vector = np.zeros(n_classes, dtype=np.float32)
    vector[list(example.labels)] = 1.0
    return vector


@dataclass
class DatasetSplits:
    """A data set's label set and its splits; `notes` summarise what was skipped, if anything."""

    labels: LabelSet
    train: list[Example]
    valid: list[Example]
    test: list[Example] | None = None
    notes: list[str] = field(default_factory=list)


def call_reader(
    reader: Callable[..., DatasetSplits], root: str | Path, options: dict, what: str
) -> DatasetSplits:
    """Call `reader(root, **options)`, refusing options it does not take with a clear message."""
    try:
        inspect.signature(reader).bind(root, **options)
    except TypeError:
        accepted = [p for p in inspect.signature(reader).parameters if p != "root"]
        unknown = sorted(set(options) - set(accepted))
        raise DatasetError(
            f"{what}: unknown option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) or 'none'}"
        ) from None
    return reader(root, **options)


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a file, else a DatasetError saying which file of the layout is missing."""
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    return path


def read_text(path: Path, what: str) -> str:
    """The text of a UTF-8 file of the layout, or a DatasetError saying why it cannot be read."""
    require_file(path, what)
    try:
        return path.read_text("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: {what} is not UTF-8 text ({e})") from None


def require_dir(path: Path, what: str) -> Path:
    """`path` if it is a folder, else a DatasetError."""
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} not found (expected a folder)")
    return path


def is_audio(name: str) -> bool:
    """Whether a file name has an audio suffix; hidden files (macOS `._x.wav`) are not audio."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def audio_files(folder: Path) -> list[Path]:
    """Audio files under `folder` at any depth, sorted, skipping hidden folders."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(parent, name) for name in files if is_audio(name)]
    return sorted(found)


def class_folders(root: Path, *, skip_prefixes: tuple[str, ...] = (".",)) -> dict[str, list[Path]]:
    """The layout with one subfolder per class: {class name: its audio files}, names sorted."""
    require_dir(root, "data set folder")
    stray = sorted(p.name for p in root.iterdir() if p.is_file() and is_audio(p.name))
    if stray:
        raise DatasetError(
            f"{root}: expected audio inside one subfolder per class, but found {len(stray)} "
            f"audio file(s) directly in the folder ({quote(stray)})"
        )
    names = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(skip_prefixes)
    )
    if not names:
        raise DatasetError(f"{root}: no class subfolders found (expected one folder per class)")
    classes = {name: audio_files(root / name) for name in names}
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise DatasetError(f"{root}: class folder(s) without audio files: {quote(empty)}")
    return classes


def read_csv_rows(path: Path, columns: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """The rows of a CSV with a header, each with `file:line` to name it in errors."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                found = ", ".join(header) or "nothing"
                raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; found {found}")
            for row in reader:
                # DictReader pads short rows with None and files surplus fields under None.
                if None in row or None in row.values():
                    columns = ", ".join(header)
                    raise DatasetError(
                        f"{path}:{reader.line_num}: expected {len(header)} fields ({columns})"
                    )
                yield f"{path}:{reader.line_num}", row
        except (UnicodeDecodeError, csv.Error) as e:
            raise DatasetError(f"{path}:{reader.line_num}: not a readable CSV ({e})") from None


def read_labels(path: str | Path, *, multi_label: bool) -> LabelSet:
    """A label file (see asttag.labels.read_label_file), with its errors as DatasetError."""
    try:
        return read_label_file(path, multi_label=multi_label)
    except ValueError as e:
        raise DatasetError(str(e)) from None


def label_lookup(labels: LabelSet) -> LabelLookup:
    """A function mapping a label id or name (case-insensitive) to its index, or failing at `where`.

    Unlike LabelSet.index, digit strings are names here, never positions: data sets with
    classes named "0".."9" would otherwise be silently misread.
    """
    index = {name.casefold(): i for i, name in reversed(list(enumerate(labels.names)))}
    index.update({label_id: i for i, label_id in enumerate(labels.ids)})

    def lookup(key: str, where: str) -> int:
        found = index.get(key, index.get(key.casefold()))
        if found is None:
            raise DatasetError(f"{where}: unknown label {key!r}")
        return found

    return lookup


def resolve_path(manifest: Path, value: str, where: str) -> Path:
    """A listed audio path: relative paths resolve against the manifest's folder."""
    if not value.strip():
        raise DatasetError(f"{where}: empty audio path")
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else manifest.parent / path


def quote(names: Sequence[object]) -> str:
    """The first few names, then how many more."""
    shown = ", ".join(str(n) for n in names[:_QUOTED])
    more = len(names) - _QUOTED
    return f"{shown} and {more} more" if more > 0 else shown


def check_files_exist(examples: Sequence[Example], source: Path) -> None:
    """Fail before any training when audio files that `source` lists are missing."""
    missing = [e.path for e in examples if not e.path.is_file()]
    if missing:
        raise DatasetError(
            f"{source}: {len(missing)} of {len(examples)} listed audio files are missing "
            f"({quote(missing)})"
        )


def holdout(
    examples: Sequence[Example], fraction: float, *, seed: int
) -> tuple[list[Example], list[Example]]:
    """Split off `fraction` of the examples for validation, per class, reproducibly by `seed`.

    Stratified on each example's first label, so that every class with enough examples is in
    both parts; the order of the input is kept in both parts.
    """
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"validation fraction must lie strictly between 0 and 1, got {fraction}")
    rng = random.Random(seed)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, example in enumerate(examples):
        groups.setdefault(example.labels[:1], []).append(i)
    chosen: set[int] = set()
    for key in sorted(groups):
        members = groups[key]
        chosen.update(rng.sample(members, round(len(members) * fraction)))
    if not chosen:
        raise DatasetError(
            f"validation fraction {fraction} of {len(examples)} examples selects none; "
            "raise it or give a validation set"
        )
    train = [e for i, e in enumerate(examples) if i not in chosen]
    valid = [e for i, e in enumerate(examples) if i in chosen]
    return train, valid
