"""Manifests of a user's own data: CSV or JSON lines listing audio files with labels or scores.

CSV (`.csv`), with a header and a `path` column, and then either
  - a `labels` column: the clip's labels separated by `;`, or by `,` when the field holds no `;`
    (quote such a field). Names that contain commas (AudioSet's "Inside, small room") must be
    separated by `;`. An empty field means no positive label. Other columns are ignored; or
  - one column per class, named by the class, holding the clip's score in [0, 1] for it: soft
    targets, for distillation. Every column other than `path` is then a class.
JSON lines (`.jsonl`, `.ndjson`), one object per line: `{"path": ..., "labels": [...]}` (a string
is split as in CSV) or `{"path": ..., "scores": {label: score, ...}}` (unnamed classes score 0).

Relative paths resolve against the manifest's folder. Labels come from `label_file` (see
`asttag.labels.read_label_file`) or are collected from every manifest read, sorted by name; rows
name them by id or name, case-insensitive. The data are single-label when `multi_label=False`, or,
when it is not given, when every row has exactly one label and every score row sums to 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..labels import LabelSet
from .base import (
    DatasetError,
    DatasetSplits,
    Example,
    LabelLookup,
    check_files_exist,
    holdout,
    label_lookup,
    read_csv_rows,
    read_labels,
    read_text,
    require_file,
    resolve_path,
)

CSV_SUFFIXES = (".csv",)
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
# How far a row of soft scores may sum from 1 and still read as one softmax distribution.
_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class _Row:
    """One manifest entry before its labels are mapped to indices: names or scores."""

    where: str
    path: Path
    names: tuple[str, ...] = ()
    scores: dict[str, float] | None = None


def load(
    root: str | Path,
    *,
    valid: str | Path | None = None,
    test: str | Path | None = None,
    label_file: str | Path | None = None,
    multi_label: bool | None = None,
    valid_fraction: float = 0.0,
    seed: int = 0,
) -> DatasetSplits:
    """The manifest `root` for training; `valid`/`test` manifests, or `valid_fraction` held out."""
    if valid is not None and valid_fraction:
        raise DatasetError("give a validation manifest or valid_fraction, not both")
    sources = {"train": root, "valid": valid, "test": test}
    manifests = {split: Path(p).expanduser() for split, p in sources.items() if p is not None}
    rows = {split: _read_manifest(path) for split, path in manifests.items()}
    every_row = [row for split_rows in rows.values() for row in split_rows]
    if multi_label is None:
        multi_label = not _single_label(every_row)
    if label_file is not None:
        labels = read_labels(label_file, multi_label=multi_label)
    else:
        labels = _collected_labels(every_row, multi_label=multi_label)
    lookup = label_lookup(labels)
    examples = {}
    for split, split_rows in rows.items():
        examples[split] = [_example(row, lookup, labels) for row in split_rows]
        check_files_exist(examples[split], manifests[split])
    train, held_out = examples["train"], examples.get("valid", [])
    if valid_fraction:
        train, held_out = holdout(train, valid_fraction, seed=seed)
    return DatasetSplits(labels, train, held_out, examples.get("test"))


def split_labels(field: str) -> tuple[str, ...]:
    """The label names in one labels field: `;`-separated, or `,`-separated without any `;`."""
    separator = ";" if ";" in field else ","
    return tuple(name.strip() for name in field.split(separator) if name.strip())


def _read_manifest(path: Path) -> list[_Row]:
    require_file(path, "manifest")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        rows = _read_csv(path)
    elif suffix in JSON_LINES_SUFFIXES:
        rows = _read_json_lines(path)
    else:
        raise DatasetError(
            f"{path}: unknown manifest type {suffix or '(no suffix)'}; use "
            f"{', '.join(CSV_SUFFIXES + JSON_LINES_SUFFIXES)} (for the AST JSON manifest "
            '{"data": [...]} use the audioset reader with label_file)'
        )
    if not rows:
        raise DatasetError(f"{path}: the manifest lists no clips")
    return rows


def _read_csv(path: Path) -> list[_Row]:
    rows = []
    for where, record in read_csv_rows(path, ["path"]):
        clip = resolve_path(path, record["path"], where)
        if "labels" in record:
            rows.append(_Row(where, clip, names=split_labels(record["labels"])))
            continue
        classes = [column for column in record if column != "path"]
        if not classes:
            raise DatasetError(f"{path}: needs a labels column or one score column per class")
        rows.append(_Row(where, clip, scores={c: _score(record[c], c, where) for c in classes}))
    return rows


def _read_json_lines(path: Path) -> list[_Row]:
    rows = []
    lines = read_text(path, "manifest").splitlines()
    for line_number, line in enumerate(lines, start=1):
        if line.strip():
            rows.append(_json_row(line, path, f"{path}:{line_number}"))
    return rows


def _json_row(line: str, manifest: Path, where: str) -> _Row:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        raise DatasetError(f'{where}: expected an object with a string "path"')
    if ("labels" in record) == ("scores" in record):
        raise DatasetError(f'{where}: needs exactly one of "labels" and "scores"')
    clip = resolve_path(manifest, record["path"], where)
    if "scores" in record:
        scores = record["scores"]
        if not isinstance(scores, dict):
            raise DatasetError(f'{where}: "scores" must be an object {{label: score}}')
        return _Row(where, clip, scores={k: _score(v, k, where) for k, v in scores.items()})
    labels = record["labels"]
    if isinstance(labels, str):
        return _Row(where, clip, names=split_labels(labels))
    if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
        raise DatasetError(f'{where}: "labels" must be a list of label names or a string')
    return _Row(where, clip, names=tuple(labels))


def _score(value: object, label: str, where: str) -> float:
    """A soft target in [0, 1]."""
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: score of {label!r} is not a number: {value!r}") from None
    if not 0.0 <= score <= 1.0:  # also refuses NaN
        raise DatasetError(f"{where}: score of {label!r} must lie in [0, 1], got {score}")
    return score


def _single_label(rows: list[_Row]) -> bool:
    """Whether every row names exactly one label or holds scores that sum to 1."""
    return all(
        len(row.names) == 1
        if row.scores is None
        else math.isclose(sum(row.scores.values()), 1.0, abs_tol=_SUM_TOLERANCE)
        for row in rows
    )


def _collected_labels(rows: list[_Row], *, multi_label: bool) -> LabelSet:
    names = {name for row in rows for name in (row.names if row.scores is None else row.scores)}
    if not names:
        raise DatasetError(f"{rows[0].where}: the manifest names no labels; give a label file")
    return LabelSet.from_names(sorted(names), multi_label=multi_label)


def _example(row: _Row, lookup: LabelLookup, labels: LabelSet) -> Example:
    if row.scores is not None:
        soft = np.zeros(len(labels), dtype=np.float32)
        for name, score in row.scores.items():
            soft[lookup(name, row.where)] = score
        return Example(row.path, soft=soft)
    indices = {lookup(name, row.where) for name in row.names}
    if not labels.multi_label and len(indices) != 1:
        raise DatasetError(
            f"{row.where}: single-label data needs exactly one label per clip, got {len(indices)}"
        )
    return Example(row.path, tuple(indices))
