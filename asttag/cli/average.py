"""`asttag average`."""

from __future__ import annotations

from .app import app, not_implemented


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def average() -> None:
    """Average the weights of compatible checkpoints (not implemented yet)."""
    not_implemented("average")
