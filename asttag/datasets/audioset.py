"""AudioSet: the released segments CSVs plus a folder of clips, or the AST JSON manifest.

Segments layout (`root` is a folder): `balanced_train_segments.csv`,
`unbalanced_train_segments.csv` and `eval_segments.csv`, each with comment lines starting with
`#` and then rows `YTID, start_seconds, end_seconds, "mid1,mid2"`. Clips are looked up by YouTube
id anywhere under `audio_dir` (default: `root`); a clip's file name must be `<YTID>.<ext>` or
`<YTID>_<anything>.<ext>` (such as `YTID_30.000_40.000.wav`) with an audio suffix. Downloads
always miss some videos, so segments without a clip are skipped and summarised in
`DatasetSplits.notes` (`strict=True` makes that an error); a CSV none of whose clips are found is
always an error.

AST manifest (`root` is a `.json` file): `{"data": [{"wav": path, "labels": "mid1,mid2"}, ...]}`
as the official code writes it; extra keys are ignored; relative paths resolve against the
manifest's folder, and every listed file must exist.

Labels are AudioSet's 527 classes, mapped by mid; `label_file` (an index,mid,display_name CSV)
replaces them for a user's own data in these layouts. An unknown mid is an error naming the row.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

from ..labels import LabelSet, audioset
from .base import (
    DatasetError,
    DatasetSplits,
    Example,
    LabelLookup,
    call_reader,
    check_files_exist,
    is_audio,
    label_lookup,
    quote,
    read_labels,
    read_text,
    require_dir,
    resolve_path,
)

logger = logging.getLogger(__name__)

TRAIN_SEGMENTS = {
    "balanced": ("balanced_train_segments.csv",),
    "unbalanced": ("unbalanced_train_segments.csv",),
    "full": ("balanced_train_segments.csv", "unbalanced_train_segments.csv"),
}
EVAL_SEGMENTS = "eval_segments.csv"
YTID_LENGTH = 11


def load(root: str | Path, **options: object) -> DatasetSplits:
    """AudioSet from a folder of segments CSVs or from an AST JSON manifest file."""
    if Path(root).suffix.lower() == ".json":
        return call_reader(load_manifest, root, options, "audioset (JSON manifest)")
    return call_reader(load_segments, root, options, "audioset (segments CSVs)")


def load_segments(
    root: str | Path,
    *,
    train: str = "balanced",
    audio_dir: str | Path | None = None,
    strict: bool = False,
    label_file: str | Path | None = None,
) -> DatasetSplits:
    """Train on `train` (balanced, unbalanced or full) segments, validate on the eval segments."""
    if train not in TRAIN_SEGMENTS:
        raise DatasetError(
            f"unknown AudioSet training set {train!r}; use {', '.join(TRAIN_SEGMENTS)}"
        )
    root = require_dir(Path(root).expanduser(), "AudioSet folder")
    clip_dir = require_dir(Path(audio_dir).expanduser(), "audio folder") if audio_dir else root
    labels = _label_set(label_file)
    lookup = label_lookup(labels)
    clips = _ClipIndex(clip_dir)
    notes: list[str] = []
    segments = {
        name: _segments(root / name, lookup) for name in (*TRAIN_SEGMENTS[train], EVAL_SEGMENTS)
    }
    examples = {
        name: _with_clips(rows, clips, root / name, strict=strict, notes=notes)
        for name, rows in segments.items()
    }
    train_examples = [e for name in TRAIN_SEGMENTS[train] for e in examples[name]]
    return DatasetSplits(labels, train_examples, examples[EVAL_SEGMENTS], notes=notes)


def load_manifest(
    root: str | Path,
    *,
    valid: str | Path | None = None,
    test: str | Path | None = None,
    label_file: str | Path | None = None,
) -> DatasetSplits:
    """AST JSON manifests: `root` for training, optional `valid` and `test` manifests."""
    labels = _label_set(label_file)
    lookup = label_lookup(labels)

    def read(path: str | Path) -> list[Example]:
        return _manifest_examples(Path(path).expanduser(), lookup)

    return DatasetSplits(
        labels,
        read(root),
        read(valid) if valid is not None else [],
        read(test) if test is not None else None,
    )


def _label_set(label_file: str | Path | None) -> LabelSet:
    return audioset() if label_file is None else read_labels(label_file, multi_label=True)


def _segments(csv_path: Path, lookup: LabelLookup) -> list[tuple[str, tuple[int, ...]]]:
    """(YTID, class indices) of each segment row of an AudioSet segments CSV."""
    rows = []
    lines = read_text(csv_path, "AudioSet segments CSV").splitlines()
    for line_number, line in enumerate(lines, start=1):
        if line.startswith("#") or not line.strip():
            continue
        where = f"{csv_path}:{line_number}"
        fields = next(csv.reader([line], skipinitialspace=True))
        if len(fields) != 4:
            raise DatasetError(
                f"{where}: expected YTID, start_seconds, end_seconds, positive_labels; "
                f"got {len(fields)} field(s)"
            )
        ytid, start, end, mids = (field.strip() for field in fields)
        _check_segment(ytid, start, end, where)
        indices = tuple(lookup(mid.strip(), where) for mid in mids.split(",") if mid.strip())
        if not indices:
            raise DatasetError(f"{where}: segment {ytid} has no positive labels")
        rows.append((ytid, indices))
    if not rows:
        raise DatasetError(f"{csv_path}: no segment rows")
    return rows


def _check_segment(ytid: str, start: str, end: str, where: str) -> None:
    if len(ytid) != YTID_LENGTH:
        raise DatasetError(f"{where}: {ytid!r} is not an {YTID_LENGTH}-character YouTube id")
    try:
        float(start), float(end)
    except ValueError:
        raise DatasetError(
            f"{where}: start and end must be seconds, got {start!r}, {end!r}"
        ) from None


def _with_clips(
    rows: list[tuple[str, tuple[int, ...]]],
    clips: _ClipIndex,
    csv_path: Path,
    *,
    strict: bool,
    notes: list[str],
) -> list[Example]:
    """Examples for the segments whose clip exists; the others are summarised or refused."""
    examples, missing = [], []
    for ytid, indices in rows:
        path = clips.find(ytid)
        if path is None:
            missing.append(ytid)
        else:
            examples.append(Example(path, indices))
    if not missing:
        return examples
    summary = (
        f"{csv_path.name}: {len(missing)} of {len(rows)} segments have no clip in "
        f"{clips.folder} ({quote(missing)})"
    )
    if strict or not examples:
        raise DatasetError(summary)
    logger.warning(summary)
    notes.append(summary)
    return examples


class _ClipIndex:
    """Audio files under a folder, found by the YouTube id their name starts with."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._paths: dict[str, Path] = {}
        self._repeated: dict[str, list[Path]] = {}
        # os.walk, not Path.rglob: an archive holds millions of clips.
        for parent, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                ytid = _ytid_of(name)
                if ytid is None:
                    continue
                path = Path(parent, name)
                if ytid in self._paths:
                    self._repeated.setdefault(ytid, [self._paths[ytid]]).append(path)
                self._paths.setdefault(ytid, path)

    def find(self, ytid: str) -> Path | None:
        """The clip of `ytid`, None when there is none; two candidates are an error."""
        if ytid in self._repeated:
            raise DatasetError(
                f"{self.folder}: several clips for YouTube id {ytid}: "
                f"{quote(sorted(map(str, self._repeated[ytid])))}"
            )
        return self._paths.get(ytid)


def _ytid_of(name: str) -> str | None:
    """The YouTube id an accepted clip file name starts with, or None."""
    if not is_audio(name):
        return None
    stem = os.path.splitext(name)[0]
    if len(stem) == YTID_LENGTH or (len(stem) > YTID_LENGTH and stem[YTID_LENGTH] == "_"):
        return stem[:YTID_LENGTH]
    return None


def _manifest_examples(path: Path, lookup: LabelLookup) -> list[Example]:
    """The entries of one AST JSON manifest, checked and with their files present."""
    try:
        data = json.loads(read_text(path, "AST JSON manifest"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f'{path}: expected {{"data": [{{"wav": ..., "labels": ...}}, ...]}}')
    examples = []
    for i, entry in enumerate(data["data"]):
        where = f"{path}: data[{i}]"
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(key), str) for key in ("wav", "labels")
        ):
            raise DatasetError(f'{where}: expected an object with string "wav" and "labels"')
        mids = [mid.strip() for mid in entry["labels"].split(",") if mid.strip()]
        clip = resolve_path(path, entry["wav"], where)
        examples.append(Example(clip, tuple(lookup(mid, where) for mid in mids)))
    if not examples:
        raise DatasetError(f"{path}: the manifest lists no clips")
    check_files_exist(examples, path)
    return examples
