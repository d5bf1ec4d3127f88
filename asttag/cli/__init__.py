"""The asttag command line: a thin layer over the core modules.

Importing this package must not import torch: every command imports what it needs inside its
body, so `asttag --help` and shell completion stay instant.
"""

from __future__ import annotations

import typer

from .. import __version__
from .app import app

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
) -> None:
    """Tag audio of any length with the Audio Spectrogram Transformer (AST)."""


def main() -> None:
    app()
