"""The resume journal of a single-output run.

A run that writes one output file (`-o results.csv`) appends each finished file's output chunk to
a journal beside it (`results.csv.asttag-journal`, one JSON line per file, flushed at once) and
assembles the output from the journal, atomically, when every file is done. A killed run leaves
the journal behind; the same command run again skips what it holds and never tags a file twice.

The journal's first line holds a hash of the options that change results: a journal written with
other options is not resumed from. Entries are keyed by each input's absolute path, size and
modification time, so a file changed since is tagged again. Under torchrun every rank keeps its
own journal (`.rank3`) and rank 0 assembles the output from all of them in input order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .atomic import atomic_path

if TYPE_CHECKING:
    from .writers import Writer

__all__ = ["Journal", "JournalStatus", "run_key", "input_key", "JOURNAL_SUFFIX"]

JOURNAL_SUFFIX = ".asttag-journal"
_VERSION = 1


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def run_key(options: dict) -> str:
    """A hash of the options that change results."""
    return _digest(json.dumps(options, sort_keys=True))


def input_key(path: str | Path) -> str:
    """A hash of an input's absolute path, size and modification time."""
    absolute = os.path.abspath(path)
    try:
        st = os.stat(absolute)
    except OSError:
        return _digest(f"{absolute}\0missing")  # never recorded: such a file always fails
    return _digest(f"{absolute}\0{st.st_size}\0{st.st_mtime_ns}")


@dataclass(frozen=True)
class JournalStatus:
    done: int  # files already recorded, by any rank, with these options
    stale: list[Path]  # journals written with other options, not resumed from


class Journal:
    """Append-only record of finished files for one output path."""

    def __init__(self, output: str | Path, *, run: str, rank: int = 0, world: int = 1) -> None:
        self.output = Path(output)
        self.run = run
        suffix = JOURNAL_SUFFIX + (f".rank{rank}" if world > 1 else "")
        self.path = self.output.with_name(self.output.name + suffix)
        self._index: dict[str, tuple[Path, int]] = {}  # input key -> (journal, byte offset)
        self._file: BinaryIO | None = None

    def _journals(self) -> list[Path]:
        return sorted(self.output.parent.glob(self.output.name + JOURNAL_SUFFIX + "*"))

    def _header(self) -> bytes:
        return (json.dumps({"asttag_journal": _VERSION, "run": self.run}) + "\n").encode()

    def _scan(self) -> list[Path]:
        """Index the entries of every journal with this run's options; return the others."""
        self._index.clear()
        stale = []
        for path in self._journals():
            with open(path, "rb") as f:
                if f.readline() != self._header():
                    stale.append(path)
                    continue
                offset = f.tell()
                for line in f:
                    if line.endswith(b"\n"):  # a line cut short by a kill is not an entry
                        self._index[json.loads(line)["key"]] = (path, offset)
                    offset += len(line)
        return stale

    def start(self) -> JournalStatus:
        """Read what earlier runs finished and open this rank's journal for appending."""
        stale = self._scan()
        if self.path in stale or not self.path.exists():
            with atomic_path(self.path) as tmp:
                tmp.write_bytes(self._header())
        self._file = open(self.path, "r+b")
        data = self._file.read()
        # Drop a last line cut short by a kill, so the next entry starts on a line of its own.
        self._file.truncate(data.rfind(b"\n") + 1)
        self._file.seek(0, os.SEEK_END)
        return JournalStatus(done=len(self._index), stale=[p for p in stale if p != self.path])

    def done(self, key: str) -> bool:
        return key in self._index

    def record(self, key: str, source: str, chunk: str) -> None:
        """Add one finished file; it is on disk (in the OS's hands) when this returns."""
        assert self._file is not None, "Journal.start() first"
        offset = self._file.tell()
        line = json.dumps({"key": key, "file": source, "chunk": chunk}, ensure_ascii=False)
        self._file.write(line.encode("utf-8") + b"\n")
        self._file.flush()
        self._index[key] = (self.path, offset)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def assemble(self, keys: list[str], writer: Writer) -> int:
        """Write the output from every rank's entries, in the order of `keys`; return the count.

        Keys without an entry (files that failed) are left out.
        """
        self.close()
        self._scan()
        written = 0
        with contextlib.ExitStack() as stack:
            journals = {p: stack.enter_context(open(p, "rb")) for p, _ in self._index.values()}
            tmp = stack.enter_context(atomic_path(self.output))
            out = stack.enter_context(open(tmp, "w", encoding="utf-8"))
            out.write(writer.header())
            for key in keys:
                if key not in self._index:
                    continue
                path, offset = self._index[key]
                journals[path].seek(offset)
                chunk = json.loads(journals[path].readline())["chunk"]
                out.write(chunk if written == 0 else writer.separator + chunk)
                written += 1
            out.write(writer.footer())
        return written

    def remove(self) -> None:
        """Delete every journal of this output (after the output is complete)."""
        self.close()
        for path in self._journals():
            path.unlink(missing_ok=True)
