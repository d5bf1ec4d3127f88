"""`asttag evaluate`."""

from __future__ import annotations

from .app import app, not_implemented


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def evaluate() -> None:
    """Evaluate a model on a data set: mAP, AUC, d-prime, accuracy (not implemented yet)."""
    not_implemented("evaluate")
