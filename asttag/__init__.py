"""asttag: tag audio of any length with the Audio Spectrogram Transformer (AST).

Nothing heavy is imported here: torch loads on first use of a model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["__version__", "load_model", "Tagger"]

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .model import AST


def load_model(source: str = "default", *, device: str = "cpu") -> "AST":
    """Load a model by name (see `asttag models list`) or from a file or directory."""
    from .hub import load_model as _load

    return _load(source, device=device)


def __getattr__(name: str) -> Any:
    # The Tagger pulls in torch; import it only when someone asks for it.
    if name == "Tagger":
        from .tagger import Tagger

        return Tagger
    raise AttributeError(f"module 'asttag' has no attribute {name!r}")
