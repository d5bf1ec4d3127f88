"""`asttag ensemble`."""

from __future__ import annotations

from .app import app, not_implemented


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def ensemble() -> None:
    """Ensemble several models' predictions (not implemented yet)."""
    not_implemented("ensemble")
