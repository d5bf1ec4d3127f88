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
    from .hub import load_model
    from .tagger import Tagger


def __getattr__(name: str) -> Any:
    # Both pull in torch: import them only when someone asks for them.
    if name == "load_model":
        from .hub import load_model

        return load_model
    if name == "Tagger":
        from .tagger import Tagger

        return Tagger
    raise AttributeError(f"module 'asttag' has no attribute {name!r}")
