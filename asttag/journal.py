"""The resume journal of a single-output run.

A run that writes one output file (`-o results.csv`) appends each finished file's output chunk to
a journal beside it (`results.csv.asttag-journal`, one JSON line per file, flushed at once) and
assembles the output from the journal, atomically, when every file is done. A killed run leaves
the journal behind; the same command run again skips what it holds and never tags a file twice.

The journal's first line holds a hash of the options that change results: a journal written with
other options is not resumed from. Entries are keyed by each input's absolute path, size and
modification time, so a file changed since is tagged again. Under torchrun every rank keeps its
own journal (`.rank3`) and rank 0 assembles the output from all of them in input order.

A run holds a lock beside its journal (`results.csv.asttag-lock`, fcntl.flock) from `start` to
`release`: a second run writing the same output at the same time is refused instead of
assembling from a journal the first one deletes. The OS drops the lock of a run that dies. A
damaged entry (a line that is not one) is dropped and its file tagged again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .atomic import NAME_MAX, atomic_path

if TYPE_CHECKING:
    from .writers import Writer

__all__ = ["Journal", "JournalBusy", "JournalStatus", "run_key", "input_key", "JOURNAL_SUFFIX"]

JOURNAL_SUFFIX = ".asttag-journal"
LOCK_SUFFIX = ".asttag-lock"
_VERSION = 1

# A flock belongs to the open file, which a forked child (a DataLoader worker) shares: a worker
# outliving a killed run would hold the lock and refuse the resume. Children close their copies.
_HELD_LOCKS: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in _HELD_LOCKS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)
# The longest ending a journal's name gets: the suffix and a rank (".rank123456").
_LONGEST_ENDING = len(JOURNAL_SUFFIX) + len(".rank") + 6


def _digest(text: str) -> str:
    # surrogateescape: a name that is not UTF-8 hashes as its own bytes
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


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


def _base_name(output: Path) -> str:
    """The output's name, shortened (with a digest) where a journal's ending would not fit."""
    name = os.fsencode(output.name)
    if len(name) + _LONGEST_ENDING <= NAME_MAX:
        return output.name
    return os.fsdecode(name[: NAME_MAX - _LONGEST_ENDING - 9]) + "~" + _digest(output.name)[:8]


class JournalBusy(OSError):
    """Another run is writing the same output now."""


@dataclass(frozen=True)
class JournalStatus:
    done: int  # files already recorded, by any rank, with these options
    stale: list[Path]  # journals written with other options, not resumed from
    damaged: int = 0  # entries that were not valid lines, dropped: their files are tagged again


class Journal:
    """Append-only record of finished files for one output path."""

    def __init__(self, output: str | Path, *, run: str, rank: int = 0, world: int = 1) -> None:
        self.output = Path(output)
        self.run = run
        self._base = _base_name(self.output)
        rank_suffix = f".rank{rank}" if world > 1 else ""
        self.path = self.output.with_name(self._base + JOURNAL_SUFFIX + rank_suffix)
        self.lock_path = self.output.with_name(self._base + LOCK_SUFFIX + rank_suffix)
        self._index: dict[str, tuple[Path, int]] = {}  # input key -> (journal, byte offset)
        self._damaged = 0
        self._file: BinaryIO | None = None
        self._lock: int | None = None

    def _journals(self) -> list[Path]:
        pattern = glob.escape(self._base + JOURNAL_SUFFIX) + "*"
        return sorted(self.output.parent.glob(pattern))

    def _header(self) -> bytes:
        return (json.dumps({"asttag_journal": _VERSION, "run": self.run}) + "\n").encode()

    def _scan(self) -> list[Path]:
        """Index the entries of every journal with this run's options; return the others."""
        self._index.clear()
        self._damaged = 0
        stale = []
        for path in self._journals():
            with open(path, "rb") as f:
                if f.readline() != self._header():
                    stale.append(path)
                    continue
                offset = f.tell()
                for line in f:
                    if line.endswith(b"\n"):  # a line cut short by a kill is not an entry
                        key = _entry_key(line)
                        if key is None:
                            self._damaged += 1
                        else:
                            self._index[key] = (path, offset)
                    offset += len(line)
        return stale

    def _acquire(self) -> None:
        """Hold this journal's lock, or raise JournalBusy naming the run that holds it."""
        while self._lock is None:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise JournalBusy(errno.EBUSY, f"another asttag run (pid {holder}) is writing it "
                                  "now; wait for it to finish or write elsewhere",
                                  str(self.output)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its holder removed the file as we opened it: lock the new one
                os.close(fd)
                continue
            with contextlib.suppress(OSError):  # the pid is for the message; a full disk may refuse it
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            self._lock = fd
            _HELD_LOCKS.add(fd)

    def release(self) -> None:
        """Close the journal and give up the lock (the journal stays, for a later resume)."""
        self.close()
        if self._lock is not None:
            self.lock_path.unlink(missing_ok=True)  # before unlocking: see _acquire
            _HELD_LOCKS.discard(self._lock)
            os.close(self._lock)
            self._lock = None

    def start(self) -> JournalStatus:
        """Take the lock, read what earlier runs finished, open this rank's journal to append.

        Raises JournalBusy when another run holds the lock.
        """
        self._acquire()
        try:
            return self._open()
        except BaseException:
            self.release()
            raise

    def _open(self) -> JournalStatus:
        stale = self._scan()
        if self.path in stale or not self.path.exists():
            with atomic_path(self.path) as tmp:
                tmp.write_bytes(self._header())
        self._file = open(self.path, "r+b")  # noqa: SIM115 (open for the journal's life; close() closes it)
        data = self._file.read()
        # Drop a last line cut short by a kill, so the next entry starts on a line of its own.
        self._file.truncate(data.rfind(b"\n") + 1)
        self._file.seek(0, os.SEEK_END)
        return JournalStatus(done=len(self._index), stale=[p for p in stale if p != self.path],
                             damaged=self._damaged)

    def done(self, key: str) -> bool:
        return key in self._index

    def record(self, key: str, source: str, chunk: str) -> None:
        """Add one finished file; it is on disk (in the OS's hands) when this returns."""
        assert self._file is not None, "Journal.start() first"
        offset = self._file.tell()
        # ASCII escapes keep names with undecodable bytes (lone surrogates) lossless.
        line = json.dumps({"key": key, "file": source, "chunk": chunk})
        try:
            self._file.write(line.encode("ascii") + b"\n")
            self._file.flush()
        except OSError as e:  # a full disk: the error names the journal, not "no file"
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        self._index[key] = (self.path, offset)

    def close(self) -> None:
        if self._file is not None:
            # Only what a failed record() left in the buffer can fail to reach the disk here,
            # and that error was raised already; the cut line it leaves is dropped on resume.
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def assemble(self, keys: list[str], writer: Writer) -> int:
        """Write the output from every rank's entries, in the order of `keys`; return the count.

        Keys without an entry (files that failed) are left out.
        """
        return writer.write(self.output, self.chunks(keys))

    def chunks(self, keys: list[str]) -> Iterator[str]:
        """The recorded chunks of `keys` (of every rank), in that order; keys without one are
        left out."""
        self.close()
        self._scan()
        with contextlib.ExitStack() as stack:
            journals = {p: stack.enter_context(open(p, "rb")) for p, _ in self._index.values()}
            for key in keys:
                if key in self._index:
                    path, offset = self._index[key]
                    journals[path].seek(offset)
                    yield json.loads(journals[path].readline())["chunk"]

    def remove(self) -> None:
        """Delete every journal of this output (after the output is complete) and release."""
        self.close()
        for path in self._journals():
            path.unlink(missing_ok=True)
        self.release()


def _entry_key(line: bytes) -> str | None:
    """The input key of a journal entry, or None for a line that is not a valid entry."""
    try:
        entry = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return None
    ok = isinstance(entry, dict) and isinstance(entry.get("key"), str) and isinstance(
        entry.get("chunk"), str)
    return entry["key"] if ok else None
