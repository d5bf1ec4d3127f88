"""Named models: the embedded default and the published AST models on the Hugging Face hub.

`load_model` turns what a user passes as --model (a name, a file, a directory or a hub id) into
a loaded model (an `AST`, or an `Ensemble` for a bundle). Published models are downloaded once
with huggingface_hub, converted to the asttag format and kept in a cache directory
($ASTTAG_CACHE, else ~/.cache/asttag).
"""

from __future__ import annotations

from pathlib import Path

from . import checkpoint, loading
from .catalog import MODELS, NamedModel, cache_dir, cached_path, hub_name, local_model
from .checkpoint import CheckpointError
from .choices import DEFAULT_DEVICE
from .device import resolve_device
from .ensemble import Ensemble
from .model import AST

__all__ = ["NamedModel", "MODELS", "HubError", "cache_dir", "cached_path", "pull", "load_model"]

_HF_FILES = ["config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin"]


class HubError(RuntimeError):
    """A named model that cannot be had: the message says how to get it by hand."""


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
            "(or load DIR directly)"
        ) from None
    model = checkpoint.load(folder)
    return checkpoint.save(model, target, extra={"source": f"hf:{hub_id}"})


def load_model(source: str = "default", *, device: str = DEFAULT_DEVICE) -> AST | Ensemble:
    """A model (an `AST` or an `Ensemble`) from a name, a local file or directory, or a hub id,
    moved to `device` and put in eval mode."""
    local = local_model(source)
    if local is not None:
        model = loading.load(local)
    elif source == "default":
        raise HubError(
            "no default model ships with this version of asttag yet: load a checkpoint, or "
            "pull audioset-10-10-0.4593 (`asttag models pull`) where there is network"
        )
    elif source in MODELS or hub_name(source) is not None:
        model = loading.load(pull(source))
    else:
        known = ", ".join(MODELS)
        raise CheckpointError(f"{source}: no such file, directory or model name (names: {known})")
    return model.to(resolve_device(device)).eval()
