"""Label sets: AudioSet's 527 classes, ESC-50's 50, Speech Commands v2's 35, and user files.

A label set is an ordered list of classes (the order is the model's output order) with a stable
id for each class (AudioSet's machine id, or the name itself where a data set has no ids) and a
flag saying whether the task is multi-label (sigmoid outputs) or single-label (softmax outputs).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path

__all__ = [
    "LabelSet",
    "audioset",
    "esc50",
    "speech_commands",
    "read_label_file",
    "label_problems",
]

ESC50_CLASSES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm", "crying_baby", "sneezing", "clapping",
    "breathing", "coughing", "footsteps", "laughing", "brushing_teeth", "snoring",
    "drinking_sipping", "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks",
    "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick",
    "glass_breaking", "helicopter", "chainsaw", "siren", "car_horn", "engine", "train",
    "church_bells", "airplane", "fireworks", "hand_saw",
)  # fmt: skip

# Speech Commands v0.02: the 35 words, in the alphabetical order of their folder names.
SPEECH_COMMANDS_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward",
    "four", "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one",
    "right", "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow",
    "yes", "zero",
)  # fmt: skip


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of classes; position i is output i of a model."""

    names: tuple[str, ...]
    ids: tuple[str, ...]
    multi_label: bool = True

    def __post_init__(self) -> None:
        if len(self.names) != len(self.ids):
            raise ValueError(f"label set has {len(self.names)} names but {len(self.ids)} ids")
        if not self.names:
            raise ValueError("a label set needs at least one class")
        if len(set(self.ids)) != len(self.ids):
            dupes = sorted({i for i in self.ids if self.ids.count(i) > 1})
            raise ValueError(f"label ids must be unique; repeated: {', '.join(dupes[:5])}")

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...], *, multi_label: bool = True) -> LabelSet:
        """A label set whose ids are its names (data sets without machine ids)."""
        return cls(tuple(names), tuple(names), multi_label)

    @classmethod
    def generic(cls, n: int, *, multi_label: bool = True) -> LabelSet:
        """Placeholder names `class_0 ... class_{n-1}` for a model built without labels."""
        return cls.from_names([f"class_{i}" for i in range(n)], multi_label=multi_label)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, key: str | int) -> int:
        """The position of a class given by id, name (case-insensitive) or position.

        Ids and names win over positions, so a class named "10" is found by its name.
        """
        if isinstance(key, str):
            if key in self._positions:
                return self._positions[key]
            folded = key.casefold()
            for i, name in enumerate(self.names):
                if name.casefold() == folded:
                    return i
            if not key.isdigit():
                raise KeyError(f"unknown label {key!r}: not an id, name or index of this label set")
        i = int(key)
        if not 0 <= i < len(self):
            raise KeyError(f"label index {i} is out of range (0..{len(self) - 1})")
        return i

    @cached_property
    def _positions(self) -> dict[str, int]:
        """Position by id: manifests look up every stored score by its id."""
        return {key: i for i, key in enumerate(self.ids)}

    def to_dict(self) -> dict:
        return {"names": list(self.names), "ids": list(self.ids), "multi_label": self.multi_label}

    @classmethod
    def from_dict(cls, data: dict) -> LabelSet:
        return cls(tuple(data["names"]), tuple(data["ids"]), bool(data.get("multi_label", True)))

    def to_csv(self) -> str:
        """The AudioSet class_labels_indices.csv layout: index, mid, display_name."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["index", "mid", "display_name"])
        for i, (mid, name) in enumerate(zip(self.ids, self.names)):
            writer.writerow([i, mid, name])
        return out.getvalue()


def _parse_index_csv(text: str, source: str, *, multi_label: bool) -> LabelSet:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"mid", "display_name"} <= set(rows[0]):
        raise ValueError(f"{source}: expected a CSV with columns index, mid, display_name")
    if "index" in rows[0]:
        try:
            rows.sort(key=lambda r: int(r["index"]))
        except ValueError as e:
            raise ValueError(f"{source}: the index column must hold whole numbers ({e})") from None
        indices = [int(r["index"]) for r in rows]
        if indices != list(range(len(rows))):
            raise ValueError(f"{source}: indices must run 0..{len(rows) - 1} without gaps")
    return LabelSet(
        tuple(r["display_name"] for r in rows), tuple(r["mid"] for r in rows), multi_label
    )


@cache  # a LabelSet is immutable, and teachers map every window's scores through it
def audioset() -> LabelSet:
    """AudioSet's 527 classes in the order of class_labels_indices.csv (multi-label)."""
    text = resources.files("asttag").joinpath("data/audioset_labels.csv").read_text("utf-8")
    return _parse_index_csv(text, "audioset_labels.csv", multi_label=True)


def esc50() -> LabelSet:
    """ESC-50's 50 classes in target order (single-label)."""
    return LabelSet.from_names(ESC50_CLASSES, multi_label=False)


def speech_commands() -> LabelSet:
    """Speech Commands v2's 35 words (single-label)."""
    return LabelSet.from_names(SPEECH_COMMANDS_WORDS, multi_label=False)


def read_label_file(path: str | Path, *, multi_label: bool = True) -> LabelSet:
    """Read labels from a file: an index,mid,display_name CSV, a JSON list, or one name a line."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read label file ({e.strerror or e})") from None
    if path.suffix.lower() == ".json":
        try:
            names = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: expected a JSON list of label names")
        return LabelSet.from_names(names, multi_label=multi_label)
    first = text.lstrip().split("\n", 1)[0]
    if "display_name" in first:
        return _parse_index_csv(text, str(path), multi_label=multi_label)
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return LabelSet.from_names(names, multi_label=multi_label)


def label_problems(reference: LabelSet, other: LabelSet) -> list[str]:
    """How two label sets differ: size, task type, or the first id out of place."""
    if len(reference) != len(other):
        return [f"label set: {len(reference)} vs {len(other)} classes"]
    problems = []
    if reference.multi_label != other.multi_label:
        kinds = ["multi-label" if s.multi_label else "single-label" for s in (reference, other)]
        problems.append(f"label set: {kinds[0]} vs {kinds[1]}")
    differ = [i for i, (a, b) in enumerate(zip(reference.ids, other.ids)) if a != b]
    if differ:
        i = differ[0]
        problems.append(
            f"label ids differ at {len(differ)} position(s), first at {i}: "
            f"{reference.ids[i]!r} vs {other.ids[i]!r}"
        )
    return problems
