"""Load whatever a local path holds: one model in any checkpoint format, or an ensemble bundle.

This sits above checkpoint.py (the formats of one model) and ensemble.py (bundles, whose
members are checkpoints), so that neither needs the other's loader.
"""

from __future__ import annotations

from pathlib import Path

from . import checkpoint
from .ensemble import Ensemble, is_bundle, load_bundle
from .model import AST

__all__ = ["detect_format", "load"]


def detect_format(path: str | Path) -> str:
    """'asttag', 'ensemble', 'official' or 'transformers' for a local file or directory."""
    return "ensemble" if is_bundle(path) else checkpoint.checkpoint_format(path)


def load(path: str | Path, **official_options) -> AST | Ensemble:
    """The model (an `AST`) or `Ensemble` stored at `path` (format detected by itself), on the CPU.

    `official_options` (stride, target_length, ...) apply to official .pth files only.
    """
    if is_bundle(path):
        return load_bundle(path)
    return checkpoint.load(path, **official_options)
