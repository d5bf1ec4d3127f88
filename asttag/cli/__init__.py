"""The asttag command line: a thin layer over the core modules.

Importing this package must not import torch: every command imports what it needs inside its
body, so `asttag --help` and shell completion stay instant.
"""

from __future__ import annotations

import errno
import logging
import sys

import typer

from .._version import __version__
from ..names import display_name

# Each module registers its commands on `app`.
from . import (  # noqa: F401
    average,
    distill,
    embed,
    ensemble,
    evaluate,
    models,
    plot,
    probe,
    tag,
    train,
)
from .app import app, console, fail, hold_closed_stdout, names_as_bytes_on_stdout, stdout_fault

# What writing to a stream fails with: no file name, and only a stream of data is written to.
_STREAM_FAULTS = (errno.ENOSPC, errno.EPIPE, errno.EBADF, errno.EIO, errno.EDQUOT, errno.EFBIG)


def _version(value: bool) -> None:
    if value:
        print(f"asttag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details on stderr."),
) -> None:
    """Tag audio of any length with the Audio Spectrogram Transformer (AST)."""
    _log_to_stderr(logging.INFO if verbose else logging.WARNING)
    names_as_bytes_on_stdout()


class _StderrLines(logging.Handler):
    """The library's log records as lines for people: `warning: ...` (errors likewise), whole
    lines that never wrap mid-sentence, names escaped, no markup."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.WARNING:
                message = f"{record.levelname.lower()}: {message}"
            console.print(display_name(message), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging's own rule: a failed record never ends the run
            self.handleError(record)


def _log_to_stderr(level: int) -> None:
    """Route the library's log records (warnings by default) to the stderr console."""
    handler = _StderrLines()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("asttag")
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _StderrLines)] + [handler]
    root.setLevel(level)


def main() -> None:
    """The console script: the app, with faults of stdout and the file system as error lines."""
    hold_closed_stdout()
    try:
        try:
            app()
        finally:
            sys.stdout.flush()  # data still buffered meets a full disk here, not at exit
    except OSError as e:  # one that no command caught: one line, not a traceback
        try:
            if e.filename is None and e.errno in _STREAM_FAULTS:
                stdout_fault(e)
            fail(e)
        except typer.Exit as done:
            raise SystemExit(done.exit_code) from None
