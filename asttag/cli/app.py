"""The Typer application and what every command shares: the stderr console and exits."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from ..names import display_name

app = typer.Typer(
    name="asttag",
    help="Tag audio of any length with the Audio Spectrogram Transformer (AST).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# stdout carries data only; everything meant for a person goes here.
console = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def error(message: str) -> None:
    """Print `error: MESSAGE` on stderr as one line, whatever names or markup the message holds."""
    console.print(Text.assemble(("error:", "bold red"), " ", display_name(message)),
                  highlight=False, soft_wrap=True)


def fail(message: str, *, code: int = EXIT_FAILED) -> NoReturn:
    """Print an error line on stderr and exit with `code`."""
    error(message)
    raise typer.Exit(code)
