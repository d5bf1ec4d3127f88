"""ESC-50 as released: `audio/*.wav` and `meta/esc50.csv`, five folds for cross-validation.

The label set comes from the CSV's (target, category) pairs in target order, so it equals
`asttag.labels.esc50()` for the real data set and also serves a user's own set in this layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..labels import LabelSet
from .base import (
    DatasetError,
    DatasetSplits,
    Example,
    check_files_exist,
    read_csv_rows,
    require_dir,
    require_file,
)

COLUMNS = ("filename", "fold", "target", "category")


class _Row(NamedTuple):
    filename: str
    fold: int
    target: int
    category: str


def load(root: str | Path, *, fold: int = 1) -> DatasetSplits:
    """ESC-50 with `fold` held out as the validation set and the other folds for training."""
    if not isinstance(fold, int):
        raise DatasetError(f"ESC-50 fold must be a whole number, got {fold!r}")
    root = require_dir(Path(root).expanduser(), "ESC-50 folder")
    meta = require_file(root / "meta" / "esc50.csv", "ESC-50 metadata meta/esc50.csv")
    rows = [_parse_row(row, where) for where, row in read_csv_rows(meta, COLUMNS)]
    if not rows:
        raise DatasetError(f"{meta}: no rows")
    folds = sorted({row.fold for row in rows})
    if fold not in folds:
        raise DatasetError(f"{meta}: fold {fold} not found; folds present: {folds}")
    labels = _label_set(rows, meta)
    audio = root / "audio"
    train = [Example(audio / r.filename, (r.target,)) for r in rows if r.fold != fold]
    valid = [Example(audio / r.filename, (r.target,)) for r in rows if r.fold == fold]
    if not train:
        raise DatasetError(f"{meta}: fold {fold} is the only fold, nothing is left to train on")
    check_files_exist(train + valid, meta)
    return DatasetSplits(labels, train, valid)


def _parse_row(row: dict[str, str], where: str) -> _Row:
    filename, category = row["filename"].strip(), row["category"].strip()
    if not filename or not category:
        raise DatasetError(f"{where}: empty filename or category")
    fold, target = _whole_number(row, "fold", where), _whole_number(row, "target", where)
    return _Row(filename, fold, target, category)


def _whole_number(row: dict[str, str], column: str, where: str) -> int:
    try:
        return int(row[column])
    except ValueError:
        raise DatasetError(
            f"{where}: {column} must be a whole number, got {row[column]!r}"
        ) from None


def _label_set(rows: list[_Row], meta: Path) -> LabelSet:
    """Class names in target order, checking that targets and categories pair up one to one."""
    names: dict[int, str] = {}
    for row in rows:
        if names.setdefault(row.target, row.category) != row.category:
            raise DatasetError(
                f"{meta}: target {row.target} is named both {names[row.target]!r} "
                f"and {row.category!r}"
            )
    targets = sorted(names)
    if targets != list(range(len(targets))):
        raise DatasetError(
            f"{meta}: targets must run 0..{len(targets) - 1} without gaps, found {targets}"
        )
    ordered = [names[t] for t in targets]
    repeated = sorted({n for n in ordered if ordered.count(n) > 1})
    if repeated:
        raise DatasetError(f"{meta}: categories used for several targets: {', '.join(repeated)}")
    return LabelSet.from_names(ordered, multi_label=False)
