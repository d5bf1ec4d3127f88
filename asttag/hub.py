"""Named models: the embedded default and the published AST models on the Hugging Face hub.

`load_model` turns what a user passes as --model (a name, a file, a directory or a hub id) into
a loaded model (an `AST`, or an `Ensemble` for a bundle). Published models are downloaded once
with huggingface_hub, converted to the asttag format and kept in a cache directory
($ASTTAG_CACHE, else ~/.cache/asttag).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from . import checkpoint, loading
from .checkpoint import CheckpointError
from .choices import DEFAULT_DEVICE
from .device import resolve_device
from .model import TaggingModel

__all__ = ["NamedModel", "MODELS", "HubError", "cache_dir", "cached_path", "pull", "load_model"]

# The file an embedded default model ships as, inside the package's data folder.
DEFAULT_MODEL_FILE = "default.safetensors"
_HF_FILES = ["config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin"]


class HubError(RuntimeError):
    """A named model that cannot be had: the message says how to get it by hand."""


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


def _embedded_default() -> Path | None:
    path = resources.files("asttag") / "data" / DEFAULT_MODEL_FILE
    return Path(str(path)) if path.is_file() else None


def pull(name_or_id: str, *, force: bool = False) -> Path:
    """Download a published model into the cache, converted to the asttag format."""
    entry = MODELS.get(name_or_id)
    if entry is None:
        hub_id, name = name_or_id, name_or_id.replace("/", "--")
    elif entry.hub_id is None:
        raise HubError(f"{name_or_id!r} ships with asttag; there is nothing to download")
    else:
        hub_id, name = entry.hub_id, entry.name
    target = cached_path(name)
    if target.exists() and not force:
        return target
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(hub_id, allow_patterns=_HF_FILES))
    except Exception as e:  # noqa: BLE001 (offline, unknown id, hub error)
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HubError(
            f"cannot download {hub_id} ({detail}). Without network: fetch config.json, "
            f"preprocessor_config.json and the weights of https://huggingface.co/{hub_id} on "
            f"another machine into a folder DIR, then run `asttag models convert DIR {target}` "
            "(or pass --model DIR directly)"
        ) from None
    model = checkpoint.load(folder)
    return checkpoint.save(model, target, extra={"source": f"hf:{hub_id}"})


def load_model(source: str = "default", *, device: str = DEFAULT_DEVICE) -> TaggingModel:
    """A model (an `AST` or an `Ensemble`) from a name, a local file or directory, or a hub id,
    moved to `device` and put in eval mode."""
    path = Path(source).expanduser()
    if path.exists():
        model = loading.load(path)
    elif source == "default":
        embedded = _embedded_default()
        if embedded is None:
            raise HubError(
                "no default model ships with this version of asttag yet: pass --model with a "
                "checkpoint, or `asttag models pull audioset-10-10-0.4593` where there is network"
            )
        model = loading.load(embedded)
    elif source in MODELS or source.count("/") == 1 and not source.startswith((".", "/")):
        cached = cached_path(MODELS[source].name if source in MODELS else source.replace("/", "--"))
        model = loading.load(cached if cached.exists() else pull(source))
    else:
        known = ", ".join(MODELS)
        raise CheckpointError(f"{source}: no such file, directory or model name (names: {known})")
    return model.to(resolve_device(device)).eval()
