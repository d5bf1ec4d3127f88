"""Output formats, a registry keyed by format name.

A writer turns each file's `TagResult` into one chunk of text; an output is the writer's header,
the chunks joined by its separator, and its footer. Keeping chunks self-contained is what lets a
resume journal store them and a merge put them back in input order.

Every format has the same columns: file, start, end, label, label_id, score (seconds, sorted
numerically; events have peak and mean instead of score). `mode` picks the rows: clip tags,
one row per window and label (segments), or merged events.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from .atomic import atomic_path
from .names import display_name

if TYPE_CHECKING:
    from .tagger import TagResult

__all__ = [
    "Writer",
    "WRITERS",
    "format_for",
    "MODES",
    "columns",
    "rows",
    "make_writer",
    "TextStream",
    "StreamOutput",
    "output_path",
    "write_file",
]

MODES = ("tags", "segments", "events")


def columns(mode: str) -> list[str]:
    scores = ["peak", "mean"] if mode == "events" else ["score"]
    return ["file", "start", "end", "label", "label_id", *scores]


def rows(result: TagResult, mode: str) -> list[dict]:
    """The result's rows in `mode`, as plain values (times in seconds, scores in 0..1).

    Raises ValueError for a score that is not a finite number: no format may show NaN as one.
    """
    found: list[dict]
    if mode == "events":
        found = [
            {"file": result.path, "start": e.start, "end": e.end, "label": e.label,
             "label_id": e.label_id, "peak": e.peak, "mean": e.mean}
            for e in result.events
        ]
    else:
        tags = result.segments if mode == "segments" else result.tags
        found = [
            {"file": result.path, "start": t.start, "end": t.end, "label": t.label,
             "label_id": t.label_id, "score": t.score}
            for t in tags
        ]
    for row in found:
        for key in _SCORES:
            if key in row and not math.isfinite(row[key]):
                raise ValueError(f"{display_name(result.path)}: the {key} of {row['label']!r} "
                                 f"is {row[key]}, not a score")
    return found


_SCORES = ("score", "peak", "mean")


def _text(row: dict) -> dict[str, str]:
    """Rounded for people and diffs: times to the millisecond, scores to 1e-6."""
    out = {}
    for key, value in row.items():
        if key in ("start", "end"):
            out[key] = f"{value:.3f}"
        elif isinstance(value, float):
            out[key] = f"{value:.6f}"
        else:
            out[key] = str(value)
    return out


class Writer:
    """One output format. Subclasses set `name` and `suffix` and render chunks."""

    name: ClassVar[str]
    suffix: ClassVar[str]
    # Formats that describe one recording (annotation tools open them beside one audio file).
    per_recording: ClassVar[bool] = False
    separator: ClassVar[str] = ""

    def __init__(self, *, mode: str = "tags", color: bool = False, width: int = 120) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: choose from {', '.join(MODES)}")
        self.mode = mode
        self.color = color
        self.width = width

    def header(self) -> str:
        return ""

    def chunk(self, result: TagResult) -> str:
        raise NotImplementedError

    def footer(self) -> str:
        return ""

    def render(self, results: list[TagResult]) -> str:
        """A whole output holding `results`."""
        return self.header() + self.separator.join(self.chunk(r) for r in results) + self.footer()

    # Names with bytes that are not UTF-8 (lone surrogates once decoded) go out as those bytes:
    # the file names in an output are the files' own. JSON escapes them itself (see _json).
    errors: ClassVar[str] = "surrogateescape"

    def write(self, path: Path, chunks: Iterable[str]) -> int:
        """Write a whole output from `chunks` (as `chunk` made them) atomically; return how many.

        The one place an output file is made, so formats that are not text (embeddings) can
        write theirs from the same journal chunks.
        """
        count = 0
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", errors=self.errors) as out:
            out.write(self.header())
            for chunk in chunks:
                out.write(chunk if count == 0 else self.separator + chunk)
                count += 1
            out.write(self.footer())
        return count


WRITERS: dict[str, type[Writer]] = {}


def _register(cls: type[Writer]) -> type[Writer]:
    WRITERS[cls.name] = cls
    return cls


def format_for(path: str | Path) -> str | None:
    """The format whose files end as `path` does (`x.selections.txt`: raven), or None."""
    name = Path(path).name.lower()
    by_length = sorted(WRITERS.values(), key=lambda cls: len(cls.suffix), reverse=True)
    return next((cls.name for cls in by_length if name.endswith(cls.suffix)), None)


def make_writer(name: str, *, mode: str = "tags", color: bool = False, width: int = 120) -> Writer:
    if name not in WRITERS:
        raise ValueError(f"unknown format {name!r}: choose from {', '.join(WRITERS)}")
    return WRITERS[name](mode=mode, color=color, width=width)


class _Delimited(Writer):
    delimiter: ClassVar[str]

    def _lines(self, records: list[list[str]]) -> str:
        out = io.StringIO()
        # The csv module quotes as needed: AudioSet labels hold commas ("Inside, small room").
        writer = csv.writer(out, delimiter=self.delimiter, lineterminator="\n")
        writer.writerows(records)
        return out.getvalue()

    def header(self) -> str:
        return self._lines([columns(self.mode)])

    def chunk(self, result: TagResult) -> str:
        cols = columns(self.mode)
        return self._lines([[_text(r)[c] for c in cols] for r in rows(result, self.mode)])


@_register
class CsvWriter(_Delimited):
    name, suffix, delimiter = "csv", ".csv", ","


@_register
class TsvWriter(_Delimited):
    name, suffix, delimiter = "tsv", ".tsv", "\t"


def _rounded(key: str, value: object) -> object:
    """The same precision as the text formats: times to the millisecond, scores to 1e-6."""
    if not isinstance(value, float):
        return value
    return round(value, 3 if key in ("start", "end") else 6)


def _json(document: dict) -> str:
    """`document` as JSON text: never NaN, and a name's undecodable bytes as \\udcNN escapes.

    Python reads such an escape back as the lone surrogate that `os.fsencode` turns into the
    original byte, so a name survives JSON whole; other readers see U+FFFD there.
    """
    text = json.dumps(document, ensure_ascii=False, allow_nan=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


# Lone surrogates appear only inside JSON strings, where \\uXXXX is their escape.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _document(result: TagResult, mode: str) -> dict:
    items = [{k: _rounded(k, v) for k, v in row.items() if k != "file"} for row in rows(result, mode)]
    return {"file": result.path, "duration": round(result.duration, 3),
            "windows": len(result.scores), mode: items}


@_register
class JsonWriter(Writer):
    """One JSON list with an object per file."""

    name, suffix, separator = "json", ".json", ",\n"

    def header(self) -> str:
        return "[\n"

    def chunk(self, result: TagResult) -> str:
        return _json(_document(result, self.mode))

    def footer(self) -> str:
        return "\n]\n"


@_register
class JsonlWriter(Writer):
    """One JSON object per file and line."""

    name, suffix = "jsonl", ".jsonl"

    def chunk(self, result: TagResult) -> str:
        return _json(_document(result, self.mode)) + "\n"


def _label_text(row: dict) -> str:
    score = row.get("score", row.get("peak"))
    return f"{row['label']} ({score:.3f})".replace("\t", " ").replace("\n", " ")


@_register
class AudacityWriter(Writer):
    """An Audacity label track: start, end and text, tab-separated, no header."""

    name, suffix, per_recording = "audacity", ".txt", True

    def chunk(self, result: TagResult) -> str:
        return "".join(f"{r['start']:.6f}\t{r['end']:.6f}\t{_label_text(r)}\n"
                       for r in rows(result, self.mode))


@_register
class RavenWriter(Writer):
    """A Raven selection table (tab-separated, one selection per row)."""

    name, suffix, per_recording = "raven", ".selections.txt", True

    def _score_columns(self) -> list[str]:
        return ["Peak Score", "Mean Score"] if self.mode == "events" else ["Score"]

    def header(self) -> str:
        names = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                 "High Freq (Hz)", "Begin File", "Label", "Label ID", *self._score_columns()]
        return "\t".join(names) + "\n"

    def chunk(self, result: TagResult) -> str:
        lines = []
        high = f"{result.sample_rate / 2:.1f}"
        for number, r in enumerate(rows(result, self.mode), start=1):
            text = _text(r)
            scores = [text["peak"], text["mean"]] if self.mode == "events" else [text["score"]]
            cells = [str(number), "Spectrogram 1", "1", text["start"], text["end"], "0.0", high,
                     display_name(Path(result.path).name), r["label"], r["label_id"], *scores]
            lines.append("\t".join(c.replace("\t", " ") for c in cells) + "\n")
        return "".join(lines)


@_register
class TableWriter(Writer):
    """A Rich table per file, for people reading a terminal."""

    name, suffix = "table", ".table.txt"

    def chunk(self, result: TagResult) -> str:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        score_names = ["peak", "mean"] if self.mode == "events" else ["score"]
        times = [] if self.mode == "tags" else ["start", "end"]
        # Names and labels are data, never Rich markup: a "[/]" in either is shown as it is.
        table = Table(*times, "label", "label id", *score_names, title_justify="left",
                      title=Text(f"{display_name(result.path)} ({result.duration:.2f} s)"))
        for r in rows(result, self.mode):
            text = _text(r)
            table.add_row(*(text[c] for c in times), Text(r["label"]), Text(r["label_id"]),
                          *(text[s] for s in score_names))
        if not table.rows:
            table.caption = "nothing selected"
        out = io.StringIO()
        Console(file=out, force_terminal=self.color, no_color=not self.color, width=self.width,
                highlight=False).print(table)
        return out.getvalue()


class TextStream(Protocol):
    """What StreamOutput writes to: a text file, stdout, or anything else taking text."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class StreamOutput:
    """Results written as they come to a text stream, flushed after each file."""

    def __init__(self, stream: TextStream, writer: Writer) -> None:
        self.stream, self.writer = stream, writer
        self._first = True
        stream.write(writer.header())
        stream.flush()

    def write(self, result: TagResult) -> None:
        text = self.writer.chunk(result)
        self.stream.write(text if self._first else self.writer.separator + text)
        self._first = False
        self.stream.flush()

    def close(self) -> None:
        self.stream.write(self.writer.footer())
        self.stream.flush()


def output_path(source: str | Path, *, root: Path, directory: Path, writer: Writer) -> Path:
    """Where the per-file output of `source` goes: its path below `root`, under `directory`."""
    relative = Path(source).resolve().relative_to(root)
    return directory / relative.parent / (relative.stem + writer.suffix)


def write_file(path: Path, writer: Writer, results: list[TagResult]) -> None:
    """Write a whole output atomically: it appears complete or not at all."""
    writer.write(path, [writer.chunk(r) for r in results])
