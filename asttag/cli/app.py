"""The Typer application and what every command shares: the stderr console and exits."""

from __future__ import annotations

import errno
import io
import os
import sys
from pathlib import Path
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
    # Plain help and one-line usage errors, as git's and ripgrep's: no boxes that squeeze the
    # descriptions, no type column, and user text is never read as Rich markup.
    rich_markup_mode=None,
)

# stdout carries data only; everything meant for a person goes here.
console = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def describe(problem: str | BaseException) -> str:
    """A message, or an exception as its message; a file system error as `PATH: REASON`."""
    if isinstance(problem, OSError) and problem.strerror:
        reason = problem.strerror[:1].lower() + problem.strerror[1:]
        if problem.filename is None:
            return reason
        return f"{os.fsdecode(problem.filename)}: {reason}"
    return str(problem)


def check_output_file(path: Path, *, force: bool) -> None:
    """Before any work: an output file that is a directory, or exists without --force, is refused."""
    if path.is_dir():
        fail(f"{path}: is a directory; name the file to write", code=EXIT_USAGE)
    if path.exists() and not force:
        fail(f"{path} exists; pass --force to overwrite it", code=EXIT_USAGE)


def error(message: str | BaseException) -> None:
    """Print `error: MESSAGE` on stderr as one line, whatever names or markup the message holds."""
    console.print(Text.assemble(("error:", "bold red"), " ", display_name(describe(message))),
                  highlight=False, soft_wrap=True)


def fail(message: str | BaseException, *, code: int = EXIT_FAILED) -> NoReturn:
    """Print an error line on stderr and exit with `code`."""
    error(message)
    raise typer.Exit(code)


class ClosedStdout(io.TextIOBase):
    """Stands for a stdout the process was started without (`>&-`): data written to it fails."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "closed", "stdout")


def hold_closed_stdout() -> None:
    """Give a process started without stdout a ClosedStdout, and /dev/null as descriptor 1.

    Holding descriptor 1 keeps the next file opened (an output, say) from becoming stdout.
    """
    if sys.stdout is not None:
        return
    null = os.open(os.devnull, os.O_WRONLY)
    if null != 1:
        os.dup2(null, 1)
        os.close(null)
    sys.stdout = ClosedStdout()


def names_as_bytes_on_stdout() -> None:
    """Let stdout carry file names that are not UTF-8 as their own bytes, as `ls` and `find` do.

    A strict stdout would stop the run at the first such name (UnicodeEncodeError).
    """
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")


def _is_descriptor_1(stream: object) -> bool:
    try:
        return stream.fileno() == 1  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # not a file: a test's stream, ClosedStdout
        return False


def stdout_fault(problem: OSError) -> NoReturn:
    """stdout took no more data (a full disk, a closed stream): say so once and exit 1.

    stdout is pointed at /dev/null after, so Python's own flush at exit does not fail again.
    A closed pipe (`| head`) is no error to report: the reader has what it wanted.
    """
    if _is_descriptor_1(sys.stdout):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    if problem.errno == errno.EPIPE:
        raise typer.Exit(EXIT_FAILED)
    fail(f"stdout: {describe(OSError(problem.errno, problem.strerror))}")


def user_errors() -> tuple[type[BaseException], ...]:
    """What a bad model, data set or option raises: reported as one error line, exit status 1.

    The library's own errors (checkpoint, data set, evaluation, ensemble) are ValueErrors.
    """
    from ..audio import AudioError
    from ..hub import HubError

    return AudioError, HubError, OSError, ValueError
