"""Errors that name the argument they are about, so each front end can say it in its own words.

The library speaks to Python callers (`data_dir`, `force=True`); the command line turns the
argument into its flag (`--data-dir`, `--force`).
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["about", "parameter_of"]

E = TypeVar("E", bound=BaseException)


def about(error: E, parameter: str) -> E:
    """Mark `error` as being about the argument (or recipe field) `parameter`; return it."""
    error.parameter = parameter  # type: ignore[attr-defined]
    return error


def parameter_of(error: BaseException) -> str | None:
    """The argument `error` is about, if it says."""
    return getattr(error, "parameter", None)
