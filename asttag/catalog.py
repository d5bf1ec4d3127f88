"""The named models: what `--model NAME` can mean, where pulled ones are cached.

A static table, free of torch, so `asttag models list` answers at once; loading and pulling
are asttag.hub's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["NamedModel", "MODELS", "DEFAULT_MODEL_FILE", "cache_dir", "cached_path",
           "embedded_default", "hub_name", "local_model"]

# The file an embedded default model ships as, inside the package's data folder.
DEFAULT_MODEL_FILE = "default.safetensors"


@dataclass(frozen=True)
class NamedModel:
    name: str
    description: str
    hub_id: str | None = None
    size_mb: int | None = None
    metric: str = ""


MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel("default", "asttag's small embedded AudioSet tagger (527 classes, offline)"),
        NamedModel("audioset-10-10-0.4593", "AST base, AudioSet, stride 10/10, weight-averaged",
                   "MIT/ast-finetuned-audioset-10-10-0.4593", 346, "mAP 0.4593"),
        NamedModel("audioset-10-10-0.450", "AST base, AudioSet, stride 10/10",
                   "MIT/ast-finetuned-audioset-10-10-0.450", 346, "mAP 0.450"),
        NamedModel("audioset-10-10-0.448", "AST base, AudioSet, stride 10/10",
                   "MIT/ast-finetuned-audioset-10-10-0.448", 346, "mAP 0.448"),
        NamedModel("audioset-10-10-0.448-v2", "AST base, AudioSet, stride 10/10 (second run)",
                   "MIT/ast-finetuned-audioset-10-10-0.448-v2", 346, "mAP 0.448"),
        NamedModel("audioset-12-12-0.447", "AST base, AudioSet, stride 12/12",
                   "MIT/ast-finetuned-audioset-12-12-0.447", 344, "mAP 0.447"),
        NamedModel("audioset-14-14-0.443", "AST base, AudioSet, stride 14/14",
                   "MIT/ast-finetuned-audioset-14-14-0.443", 343, "mAP 0.443"),
        NamedModel("audioset-16-16-0.442", "AST base, AudioSet, stride 16/16 (no overlap)",
                   "MIT/ast-finetuned-audioset-16-16-0.442", 344, "mAP 0.442"),
        NamedModel("speechcommands-v2", "AST base, Speech Commands V2 (35 words, 1.28 s)",
                   "MIT/ast-finetuned-speech-commands-v2", 344, "accuracy 0.9812"),
    )
}


def cache_dir() -> Path:
    """Where pulled models live: $ASTTAG_CACHE, else ~/.cache/asttag."""
    return Path(os.environ.get("ASTTAG_CACHE") or Path.home() / ".cache" / "asttag")


def cached_path(name: str) -> Path:
    return cache_dir() / "models" / f"{name}.safetensors"


def embedded_default() -> Path | None:
    """The default model's file inside the package, when this build ships one."""
    path = resources.files("asttag").joinpath("data").joinpath(DEFAULT_MODEL_FILE)
    return Path(str(path)) if path.is_file() else None


def hub_name(source: str) -> str | None:
    """The cache name of a hub id (owner/name), None for anything else."""
    if source.count("/") == 1 and not source.startswith((".", "/")):
        return source.replace("/", "--")
    return None


def local_model(source: str) -> Path | None:
    """The file or folder that `source` (what --model takes) names here, without a download:
    the embedded default, a pulled named model or hub id, or a path; None when there is none.

    A name means the named model even where a file of that name lies in the working directory:
    `./default` says the file.
    """
    if source == "default":
        return embedded_default()
    if source in MODELS:
        cached = cached_path(MODELS[source].name)
        return cached if cached.exists() else None
    path = Path(source).expanduser()
    if path.exists():
        return path
    name = hub_name(source)
    if name is not None and cached_path(name).exists():
        return cached_path(name)
    return None
