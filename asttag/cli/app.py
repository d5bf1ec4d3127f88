"""The Typer application and what every command shares: the stderr console and exits."""

from __future__ import annotations

import errno
import io
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperArgument, TyperGroup, TyperOption

from ..names import display_name

# Typer checks Literal choices with pydantic, whose messages start so.
_VALIDATOR_PREFIX = "Value error, "


def argument_name(param: Any) -> str:  # Any: Typer's vendored click types are private
    """How usage names a positional argument: its placeholder, else its name in capitals."""
    return param.metavar or (param.name or "").upper()


class _PlainArgument(TyperArgument):
    """A positional argument shown as git shows one (`INPUT...`), without a Python type."""

    def _label(self) -> str:
        label = argument_name(self)
        return label + "..." if self.nargs != 1 and not label.endswith("...") else label

    def _rich_display_name(self) -> str:
        return self._label()

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        return [self._label() if self.required else f"[{self._label()}]"]


# Placeholders for the value types Typer would show as Python types (`<int>`, `<path>`).
_PLACEHOLDERS = {"int": "N", "int range": "N", "float": "X", "int,int": "N N", "path": "PATH"}


class _PlainOption(TyperOption):
    """An option whose value is shown as a placeholder (`--output PATH`, `--pad zero|repeat`),
    not as the Python type Typer reads it into."""

    def display_type_rich(self, ctx: Any) -> str | None:
        shown = super().display_type_rich(ctx)
        if self.metavar is not None or shown is None or not shown.startswith("<"):
            return shown
        kind = shown.removesuffix("...").strip("<>")
        kind = kind.removeprefix("list[").removesuffix("]")
        if "|" in kind:
            return kind
        return _PLACEHOLDERS.get(kind) or (self.name or "value").strip("_").upper().replace("_", "-")


_PLAIN: dict[type, type] = {TyperArgument: _PlainArgument, TyperOption: _PlainOption}


class PlainGroup(TyperGroup):
    """A command group whose commands show their arguments plainly in help and usage, and whose
    usage errors say what is wrong in the tool's words, not in its validation library's."""

    def invoke(self, ctx: Any) -> Any:  # Any: Typer's vendored click types are private
        try:
            return super().invoke(ctx)
        except typer.BadParameter as e:  # Typer's own click, not the click package
            e.message = e.message.removeprefix(_VALIDATOR_PREFIX)
            raise

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        for param in getattr(command, "params", ()):
            if type(param) in _PLAIN:
                param.__class__ = _PLAIN[type(param)]  # Typer builds them; only their display changes
        return command


app = typer.Typer(
    cls=PlainGroup,
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
