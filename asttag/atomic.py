"""File helpers: atomic writes (a result file or checkpoint appears complete or not at all)
and content digests."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "atomic_directory", "sha256_file", "NAME_MAX"]


# Every name of the temporary file but the target's own: ".", ".", 8 hex digits, ".tmp".
_TEMPORARY_EXTRA = 1 + 1 + 8 + 4
NAME_MAX = 255  # bytes in one file name on the file systems asttag writes to


def _temporary_name(path: Path) -> Path:
    """A fresh hidden name beside `path` that fits the name limit however long `path`'s name is."""
    stem = os.fsencode(path.name)[: NAME_MAX - _TEMPORARY_EXTRA]
    return path.with_name(f".{os.fsdecode(stem)}.{secrets.token_hex(4)}.tmp")


def _naming_target(error: OSError, target: Path, temporary: Path) -> OSError:
    """`error` told about `target`: the temporary name is a detail the user never sees."""
    if error.errno is None:
        return error
    name, tmp = os.fsdecode(error.filename or temporary), os.fsdecode(temporary)
    if name != tmp and not name.startswith(tmp + os.sep):
        return error  # about another file
    return OSError(error.errno, error.strerror, os.fsdecode(target) + name[len(tmp):])


# Libraries written in Rust (safetensors) report a failed write as text ending in Rust's
# rendering of the OS error: "... No space left on device (os error 28)".
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _as_os_error(error: Exception) -> OSError | None:
    """The OSError that `error` stands for, or None."""
    if isinstance(error, OSError):
        return error
    found = _RUST_OS_ERROR.search(str(error))
    return OSError(int(found[1]), os.strerror(int(found[1]))) if found else None


def _create(path: Path, make: Callable[[Path], None]) -> Path:
    """Make a fresh temporary entry beside `path` with `make` (which fails if it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temporary_name(path)
        try:
            make(tmp)
            return tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise _naming_target(e, path, tmp) from e


def _make_file(tmp: Path) -> None:
    # Mode 0o666 through the umask, as for any file the user creates (mkstemp gives 0o600).
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _make_directory(tmp: Path) -> None:
    tmp.mkdir(0o777)  # through the umask, like mkdir(1) (mkdtemp gives 0o700)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    The file gets the user's umask. An OSError about the temporary file (a full disk, a
    read-only file system) is raised naming `path`; the temporary file is removed.
    """
    path = Path(path)
    if path.is_dir():  # os.replace would fail only after all the work
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    tmp = _create(path, _make_file)
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as e:
        if (os_error := _as_os_error(e)) is None:
            raise
        raise _naming_target(os_error, path, tmp) from e
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, "already exists", str(path))
    tmp = _create(path, _make_directory)
    try:
        yield tmp
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        os.replace(tmp, path)
    except Exception as e:
        if (os_error := _as_os_error(e)) is None:
            raise
        raise _naming_target(os_error, path, tmp) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in pieces (checkpoints run to hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
