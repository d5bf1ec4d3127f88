"""The asttag command line: a thin layer over the core modules.

Importing this package must not import torch: every command imports what it needs inside its
body, so `asttag --help` and shell completion stay instant.
"""

from __future__ import annotations

import logging

import typer

from .._version import __version__
from .app import app, console

# Each module registers its commands on `app`.
from . import tag, train, evaluate, average, ensemble, models  # noqa: E402,F401
from . import distill  # noqa: E402,F401


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


def _log_to_stderr(level: int) -> None:
    """Route the library's log records (warnings by default) to the stderr console."""
    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("asttag")
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, RichHandler)] + [handler]
    root.setLevel(level)


def main() -> None:
    app()
