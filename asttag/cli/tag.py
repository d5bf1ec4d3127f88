"""`asttag tag`: tag recordings of any length."""

from __future__ import annotations

from .app import app, not_implemented


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def tag() -> None:
    """Tag audio files with a model (not implemented yet)."""
    not_implemented("tag")
