"""The stamp of every self-describing file asttag writes, and its check on reading.

Checkpoints and ensemble bundles (.safetensors metadata) and saved predictions (.npz, with a
JSON `meta` array) open their metadata with the same three fields: the format's name, its
version and the asttag version that wrote it. A reader refuses a file of another format, or of
a format version newer than it knows, in the same words for every kind of file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ._version import __version__
from .atomic import atomic_path

if TYPE_CHECKING:
    import torch

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "stamp", "check_stamp", "safetensors_metadata",
           "write_safetensors"]

# The asttag checkpoint's stamp (checkpoint.py), here so that code without torch can tell one.
CHECKPOINT_FORMAT = "asttag"
CHECKPOINT_VERSION = 1


def safetensors_metadata(path: str | Path, *, error: type[Exception]) -> dict[str, str]:
    """The raw string metadata of a .safetensors file (empty when it has none), read without
    torch; `error` names `path` when it is not a readable one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return f.metadata() or {}
    except Exception as e:  # noqa: BLE001 (safetensors raises several types for a damaged header)
        raise error(f"{path}: not a readable .safetensors file ({e})") from None


def stamp(format_name: str, format_version: int) -> dict[str, str | int]:
    """The fields a self-describing file opens with."""
    return {"format": format_name, "format_version": format_version, "asttag_version": __version__}


def check_stamp(
    meta: Mapping[str, object], *, source: str | Path, format_name: str, max_version: int,
    what: str, error: type[Exception],
) -> int:
    """The format version of a file stamped `format_name`; `error` names `source` otherwise,
    and when a newer asttag wrote it."""
    if meta.get("format") != format_name:
        raise error(f"{source}: not {what}")
    text = str(meta.get("format_version", "0"))
    if not text.isdigit():
        raise error(f"{source}: format_version {text!r} is not a whole number")
    version = int(text)
    if version > max_version:
        raise error(f"{source}: {what} written by a newer asttag (format {version}); upgrade "
                    "asttag to read it")
    return version


def write_safetensors(
    path: str | Path, tensors: dict[str, torch.Tensor], *, format_name: str, format_version: int,
    fields: Mapping[str, str],
) -> Path:
    """Write `tensors` as one .safetensors file, atomically, its metadata the stamp and `fields`."""
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {k: str(v) for k, v in stamp(format_name, format_version).items()} | dict(fields)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path
