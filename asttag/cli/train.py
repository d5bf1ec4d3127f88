"""`asttag train` and `asttag finetune`."""

from __future__ import annotations

from .app import app, not_implemented


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def train() -> None:
    """Train an AST on AudioSet-style data (not implemented yet)."""
    not_implemented("train")


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def finetune() -> None:
    """Fine-tune an AST on ESC-50, Speech Commands or your own data (not implemented yet)."""
    not_implemented("finetune")
