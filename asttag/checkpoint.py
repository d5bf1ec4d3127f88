"""Checkpoints: asttag's own format, and import/export of the published formats.

asttag format: one .safetensors file. The tensors are the `AST` state dict; the metadata holds
the architecture, the feature settings, the label set and free-form training facts as JSON,
so one file fully describes a model and loading it runs no pickle.

Imported formats (detected by themselves):
- the official AST `.pth` (a DataParallel state dict: `module.v.*`, `module.mlp_head.*`);
- transformers' `ASTForAudioClassification` (a directory with config.json and weights).
Every key is accounted for: missing, unexpected and mis-shaped keys fail, all named at once.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch

from ._version import __version__
from .atomic import atomic_directory
from .features import AUDIOSET_STATS, ESC50_STATS, SPEECH_COMMANDS_STATS, FeatureConfig
from .fileformat import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    check_stamp,
    safetensors_metadata,
    write_safetensors,
)
from .labels import LabelSet, audioset, esc50, speech_commands
from .model import AST, ASTConfig

__all__ = [
    "CheckpointError",
    "save",
    "load",
    "read_metadata",
    "checkpoint_format",
    "read_tensors",
    "from_official",
    "official_layout",
    "AmbiguousLayout",
    "from_transformers",
    "to_transformers",
    "load_state",
    "model_from_description",
    "check_description",
    "description_metadata",
    "empty_model",
]

log = logging.getLogger(__name__)

FORMAT_NAME, FORMAT_VERSION = CHECKPOINT_FORMAT, CHECKPOINT_VERSION
# Lengths the published models use, tried in order when a file does not say its own.
KNOWN_LENGTHS = (1024, 512, 128)
# The patch strides of the published models (square).
STANDARD_STRIDES = ((10, 10), (12, 12), (14, 14), (16, 16))


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: the message names the file, key and shapes."""


# --------------------------------------------------------------------------- asttag format


def save(model: AST, path: str | Path, *, extra: dict | None = None) -> Path:
    """Write `model` as one self-describing .safetensors file, atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return write_safetensors(path, tensors, format_name=FORMAT_NAME, format_version=FORMAT_VERSION,
                             fields={**description_metadata(model), "extra": json.dumps(extra or {})})


def description_metadata(model: AST) -> dict[str, str]:
    """What describes a model besides its weights (asttag version, architecture, feature
    settings, labels), as the string pairs a file's metadata holds; the ONNX export writes the
    same pairs."""
    return {
        "asttag_version": __version__,
        "config": json.dumps(model.config.to_dict()),
        "features": json.dumps(model.features.to_dict()),
        "labels": json.dumps(model.labels.to_dict()),
    }


def safetensors_header(path: str | Path) -> dict[str, str]:
    """The raw string metadata of a .safetensors file (empty when it has none)."""
    return safetensors_metadata(path, error=CheckpointError)


def checked_header(path: Path, *, format_name: str, max_version: int, what: str) -> dict[str, str]:
    """The metadata of a file marked `format_name`, refused if a newer asttag wrote it."""
    raw = safetensors_header(path)
    check_stamp(raw, source=path, format_name=format_name, max_version=max_version, what=what,
                error=CheckpointError)
    return raw


def read_metadata(path: str | Path) -> dict:
    """The decoded metadata of an asttag checkpoint (config, features, labels, extra)."""
    path = Path(path)
    raw = checked_header(path, format_name=FORMAT_NAME, max_version=FORMAT_VERSION,
                         what="an asttag checkpoint")
    try:
        meta = {
            "asttag_version": raw.get("asttag_version"),
            "config": json.loads(raw["config"]),
            "features": json.loads(raw["features"]),
            "labels": json.loads(raw["labels"]),
            "extra": json.loads(raw.get("extra", "{}")),
        }
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: damaged asttag metadata ({e})") from None
    check_description(meta, source=str(path))
    return meta


def _whole(low: int, high: int | None = None) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "not a whole number"
        if value < low:
            return f"must be at least {low}"
        if high is not None and value > high:
            return f"must be at most {high}"
        return None
    return check


def _number(*, positive: bool) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "not a number"
        if not math.isfinite(value):
            return "not a finite number"
        return "must be positive" if positive and value <= 0 else None
    return check


def _pair(value: object) -> str | None:
    if not isinstance(value, list) or len(value) != 2:
        return "not a pair of whole numbers"
    return next(filter(None, map(_whole(1), value)), None)


def _flag(value: object) -> str | None:
    return None if isinstance(value, bool) else "not true or false"


def _text_list(value: object) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return None if ok else "not a list of strings"


def _optional_text(value: object) -> str | None:
    return None if value is None or isinstance(value, str) else "not a string"


_count, _positive = _whole(1), _number(positive=True)
# What a stored description may hold, field by field. A checkpoint is input from anywhere, and
# a wrong value is named here before anything is built from it: heads 0 divided by zero, a
# sample rate of 0 further on, and depth 1e9 built blocks for minutes. Sizes that the tensors
# fix are also checked against them by `load_state`; depth is bounded here because the blocks
# are built before that check.
_DESCRIPTION_RULES: dict[str, dict[str, Callable[[object], str | None]]] = {
    "config": {
        "num_classes": _count, "num_mel_bins": _count, "target_length": _count,
        "patch_size": _pair, "stride": _pair, "embed_dim": _count, "depth": _whole(0, 1000),
        "num_heads": _count, "mlp_ratio": _positive, "distilled": _flag, "norm_eps": _positive,
        "head_eps": _positive, "preset": _optional_text,
    },
    "features": {
        "sample_rate": _count, "num_mel_bins": _count, "target_length": _count,
        "frame_length_ms": _positive, "frame_shift_ms": _positive,
        "mean": _number(positive=False), "std": _positive,
    },
    "labels": {"names": _text_list, "ids": _text_list, "multi_label": _flag},
}


def check_description(description: dict, *, source: str) -> None:
    """Refuse a stored description with a wrong field, naming the file and the field."""
    for section, rules in _DESCRIPTION_RULES.items():
        data = description.get(section)
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: {section}: not a JSON object")
        for name, rule in rules.items():
            if name in data and (problem := rule(data[name])) is not None:
                raise CheckpointError(f"{source}: {section}.{name} = {json.dumps(data[name])}: "
                                      f"{problem}")


def model_from_description(description: dict, *, source: str) -> AST:
    """An empty AST (see `empty_model`) from stored config, features and labels dictionaries.

    Every field is checked first (`check_description`).
    """
    check_description(description, source=source)
    try:
        return empty_model(
            ASTConfig.from_dict(description["config"]),
            features=FeatureConfig.from_dict(description["features"]),
            labels=LabelSet.from_dict(description["labels"]),
        )
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{source}: inconsistent model description ({e})") from None


def _load_asttag(path: Path) -> AST:
    meta = read_metadata(path)
    model = model_from_description(meta, source=str(path))
    load_state(model, read_tensors(path), source=str(path))
    model.extra = dict(meta["extra"])
    return model


# --------------------------------------------------------------------------- reading tensors


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or of a plain (weights-only) torch file.

    torch files are opened with weights_only=True: a pickle that would build anything other than
    tensors and plain containers (the way a crafted checkpoint runs code) is refused unrun.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 (safetensors raises several types for a damaged file)
            raise CheckpointError(f"{path}: not a readable .safetensors file ({e})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (whatever the unpickler raised, the file is refused)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused: not a plain tensor checkpoint (loading it would need to run "
            f"arbitrary code, or it is damaged): {first}"
        ) from None
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    # Training scripts often save {"state_dict": ...} or {"model": ...} around the weights.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a dictionary of tensors (a state dict)")
    return obj


def load_state(model: AST, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load `state` into `model`, failing on any missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", mismatched)):
        if items:
            shown = "; ".join(items[:8]) + (f"; ... ({len(items) - 8} more)" if len(items) > 8 else "")
            problems.append(f"{title}: {shown}")
    if problems:
        raise CheckpointError(f"{source}: does not fit the model. " + " | ".join(problems))
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            # Such a model scores NaN for every input: refuse it here, once, by name.
            raise CheckpointError(f"{source}: weights {key} hold NaN or infinite values")
    if any(p.is_meta for p in model.parameters()):
        # A shell from `empty_model`: take copies of the loaded tensors as the parameters (in
        # the model's dtype, so fp16-stored weights compute in fp32). Copies, because
        # safetensors' tensors sit at arbitrary offsets of one buffer and CPU matrix kernels
        # round differently on unaligned weights: the same weights would score differently
        # loaded than trained.
        state = {k: v.to(expected[k].dtype, copy=True) for k, v in state.items()}
        model.load_state_dict(state, strict=True, assign=True)
    else:
        model.load_state_dict(state, strict=True)


def empty_model(config: ASTConfig, **kwargs) -> AST:
    """An AST whose parameters are not allocated yet, for `load_state` to fill.

    Loading a base model this way skips drawing 86M random initial weights (~2.5 s on a CPU)
    that the checkpoint would overwrite anyway.
    """
    with torch.device("meta"):
        return AST(config, **kwargs)


# --------------------------------------------------------------------------- official .pth


def _official_key(key: str) -> str | None:
    """Official name -> asttag name; None for the unused DeiT classification heads."""
    key = key.removeprefix("module.")
    if key.startswith(("v.head.", "v.head_dist.")):
        return None
    if key.startswith("mlp_head.0."):
        return "head_norm." + key.removeprefix("mlp_head.0.")
    if key.startswith("mlp_head.1."):
        return "head." + key.removeprefix("mlp_head.1.")
    if key.startswith("v.patch_embed.proj."):
        return "patch_proj." + key.removeprefix("v.patch_embed.proj.")
    if key.startswith("v."):
        return key.removeprefix("v.")
    return key  # left as it is, so the key check names it as unexpected


class _Head(NamedTuple):
    """What a head of a published model's size is taken to be when nothing else is said."""

    labels: Callable[[], LabelSet]
    name: str
    stats: tuple[float, float]  # normalisation mean and std
    target_length: int


_HEAD_DEFAULTS = {
    527: _Head(audioset, "AudioSet", AUDIOSET_STATS, 1024),
    35: _Head(speech_commands, "Speech Commands", SPEECH_COMMANDS_STATS, 128),
    50: _Head(esc50, "ESC-50", ESC50_STATS, 512),
}


def _stride_from_name(name: str) -> tuple[int, int] | None:
    match = re.search(r"_(\d{2})_(\d{2})_", name)
    return (int(match.group(1)), int(match.group(2))) if match else None


class AmbiguousLayout(CheckpointError):
    """More than one (stride, input length) fits an official file; `candidates` lists them."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


def _lengths_for(time_patches: int, patch: int, stride: int) -> range:
    """Every input length (frames) that gives `time_patches` patches along time."""
    shortest = (time_patches - 1) * stride + patch
    return range(shortest, shortest + stride)


def official_layout(
    n_patches: int, *, source: str, num_mel_bins: int, patch: tuple[int, int],
    stride: tuple[int, int] | None, target_length: int | None, preferred_length: int,
) -> tuple[tuple[int, int], int, list[str]]:
    """The (stride, input length) of an official file's position grid, and what was inferred.

    Strides: the one given, else the file name's (audioset_12_12_0.4467.pth), else every
    published one (10, 12, 14, 16). Lengths: the one given, else a published length (1024, 512,
    128) giving the grid. Exactly one fit is taken; several are refused with the candidates named
    (`AmbiguousLayout`), so that a model is never rebuilt on a grid it was not trained on.
    """
    named = _stride_from_name(Path(source).name)
    strides = [stride] if stride else [named] if named else list(STANDARD_STRIDES)
    standard = list(dict.fromkeys([preferred_length, *KNOWN_LENGTHS]))
    fits: list[tuple[tuple[int, int], range, int | None]] = []
    for fs, ts in strides:
        freq = (num_mel_bins - patch[0]) // fs + 1
        if freq < 1 or n_patches % freq:
            continue
        lengths = _lengths_for(n_patches // freq, patch[1], ts)
        if target_length is not None:
            if target_length in lengths:
                fits.append(((fs, ts), lengths, target_length))
        else:
            fits.append(((fs, ts), lengths, next((t for t in standard if t in lengths), None)))
    if not fits:
        raise CheckpointError(
            f"{source}: its position grid holds {n_patches} patches, which fits no stride of "
            f"{', '.join(f'{f}/{t}' for f, t in strides)} at {num_mel_bins} mel bins"
            + (f" and {target_length} frames" if target_length else "")
            + "; give the mel bins, stride and input length it was trained with"
        )

    def described(fit: tuple[tuple[int, int], range, int | None]) -> str:
        (fs, ts), lengths, length = fit
        frames = f"{length}" if length else f"any of {lengths[0]}-{lengths[-1]}"
        return f"stride {fs}/{ts} with {frames} frames"

    if len(fits) > 1 or fits[0][2] is None:
        candidates = [described(f) for f in fits]
        raise AmbiguousLayout(
            f"{source}: {n_patches} patches at {num_mel_bins} mel bins fit more than one stride and "
            "input length ("
            + "; ".join(candidates) + "): give the stride and input length it was trained with",
            candidates,
        )
    (chosen_stride, _, length), = fits
    assert length is not None  # an open length was refused above
    inferred = []
    if not stride:
        inferred.append(f"stride {chosen_stride[0]}/{chosen_stride[1]} "
                        + ("(from the file name)" if named else "(the only published stride that fits)"))
    if target_length is None:
        inferred.append(f"input length {length} frames (the only published length that fits)")
    return chosen_stride, length, inferred


def from_official(
    state: dict[str, torch.Tensor],
    *,
    source: str = "state dict",
    stride: tuple[int, int] | None = None,
    target_length: int | None = None,
    num_mel_bins: int = 128,
    labels: LabelSet | None = None,
    mean: float | None = None,
    std: float | None = None,
    multi_label: bool | None = None,
) -> AST:
    """Build an AST from an official-format state dict, inferring what the file does not hold.

    The layout comes from `official_layout`. Labels, normalisation statistics and single- or
    multi-label scoring default by head size: 527 classes AudioSet, 50 ESC-50 (single-label), 35
    Speech Commands (single-label), any other generic names with AudioSet's statistics.
    Everything inferred is logged as one warning.
    """
    mapped = {}
    for key, value in state.items():
        new = _official_key(key)
        if new is not None:
            mapped[new] = value
    for required in ("cls_token", "pos_embed", "patch_proj.weight", "head.weight"):
        if required not in mapped:
            raise CheckpointError(f"{source}: not an official AST checkpoint (no {required} key)")
    dim = mapped["cls_token"].shape[-1]
    depth = len({k.split(".")[1] for k in mapped if k.startswith("blocks.")})
    num_classes = mapped["head.weight"].shape[0]
    hidden = mapped["blocks.0.mlp.fc1.weight"].shape[0] if depth else 4 * dim
    distilled = "dist_token" in mapped
    kernel = mapped["patch_proj.weight"].shape
    patch = (int(kernel[2]), int(kernel[3]))
    known = _HEAD_DEFAULTS.get(num_classes)
    default_length = known.target_length if known else KNOWN_LENGTHS[0]
    n_patches = mapped["pos_embed"].shape[1] - (2 if distilled else 1)
    chosen_stride, length, inferred = official_layout(
        n_patches, source=source, num_mel_bins=num_mel_bins, patch=patch, stride=stride,
        target_length=target_length, preferred_length=default_length,
    )
    labels, label_notes = _official_labels(num_classes, labels, mean, std, multi_label)
    config = ASTConfig(
        num_classes=num_classes, num_mel_bins=num_mel_bins, patch_size=patch, stride=chosen_stride,
        target_length=length, embed_dim=dim, depth=depth, num_heads=max(1, dim // 64),
        mlp_ratio=hidden / dim, distilled=distilled, norm_eps=1e-6, head_eps=1e-5, preset=None,
    )
    default_stats = known.stats if known else AUDIOSET_STATS
    features = FeatureConfig(
        num_mel_bins=num_mel_bins, target_length=length,
        mean=default_stats[0] if mean is None else mean, std=default_stats[1] if std is None else std,
    )
    if inferred or label_notes:
        log.warning("%s: %s", source, "; ".join(inferred + label_notes))
    model = empty_model(config, features=features, labels=labels)
    load_state(model, mapped, source=source)
    return model


def _official_labels(num_classes: int, labels: LabelSet | None, mean: float | None,
                     std: float | None, multi_label: bool | None) -> tuple[LabelSet, list[str]]:
    """The label set of an official file (see `from_official`) and what was assumed about it."""
    known = _HEAD_DEFAULTS.get(num_classes)
    name = known.name if known else None
    notes = []
    if labels is not None and len(labels) != num_classes:
        raise CheckpointError(f"{len(labels)} labels given for a head of {num_classes} classes")
    if labels is None:
        labels = known.labels() if known else LabelSet.generic(num_classes)
        notes.append(f"{name} labels" if name else "generic label names")
    if mean is None or std is None:
        notes.append(f"{name or 'AudioSet'} normalisation statistics")
    if multi_label is None:
        multi_label = known.labels().multi_label if known else True
        notes.append("multi-label (sigmoid) scores" if multi_label else "single-label (softmax) scores")
    if notes:
        notes[0] = f"{num_classes} classes taken as {notes[0]}"
    return replace(labels, multi_label=multi_label), notes


# --------------------------------------------------------------------------- transformers

_HF_PREFIX = "audio_spectrogram_transformer."
_HF_SIMPLE = {
    "embeddings.cls_token": "cls_token",
    "embeddings.distillation_token": "dist_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_HF_CLASSIFIER = {
    "classifier.layernorm.weight": "head_norm.weight",
    "classifier.layernorm.bias": "head_norm.bias",
    "classifier.dense.weight": "head.weight",
    "classifier.dense.bias": "head.bias",
}
_HF_LAYER = {
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
}
_QKV = ("query", "key", "value")


def _hf_to_asttag(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    layer_re = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
    for key, value in state.items():
        if key in _HF_CLASSIFIER:
            out[_HF_CLASSIFIER[key]] = value
            continue
        short = key.removeprefix(_HF_PREFIX)
        if short in _HF_SIMPLE:
            out[_HF_SIMPLE[short]] = value
            continue
        match = layer_re.match(short)
        if match:
            layer, name, kind = match.groups()
            if name.startswith("attention.attention."):
                part = name.rsplit(".", 1)[1]
                if part in _QKV:
                    qkv.setdefault((layer, kind), {})[part] = value
                    continue
            if name in _HF_LAYER:
                out[f"blocks.{layer}.{_HF_LAYER[name]}.{kind}"] = value
                continue
        out[key] = value  # unknown: the key check names it
    for (layer, kind), parts in qkv.items():
        missing = [p for p in _QKV if p not in parts]
        if missing:
            raise CheckpointError(
                f"layer {layer}: attention {kind} lacks {', '.join(missing)} (query, key and value "
                "are needed together)"
            )
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts[p] for p in _QKV], dim=0)
    return out


def _asttag_to_hf(state: dict[str, torch.Tensor], dim: int) -> dict[str, torch.Tensor]:
    simple = {v: k for k, v in _HF_SIMPLE.items()}
    classifier = {v: k for k, v in _HF_CLASSIFIER.items()}
    layer_names = {v: k for k, v in _HF_LAYER.items()}
    out = {}
    for key, value in state.items():
        if key in classifier:
            out[classifier[key]] = value
        elif key in simple:
            out[_HF_PREFIX + simple[key]] = value
        else:
            _, layer, rest = key.split(".", 2)
            name, kind = rest.rsplit(".", 1)
            prefix = f"{_HF_PREFIX}encoder.layer.{layer}."
            if name == "attn.qkv":
                for i, part in enumerate(_QKV):
                    out[f"{prefix}attention.attention.{part}.{kind}"] = value[i * dim : (i + 1) * dim]
            else:
                out[f"{prefix}{layer_names[name]}.{kind}"] = value
    return {k: v.contiguous() for k, v in out.items()}


def _labels_from_hf(config: dict, num_classes: int) -> LabelSet:
    id2label = config.get("id2label") or {}
    found = (id2label.get(str(i), id2label.get(i)) for i in range(num_classes))
    names = [n for n in found if n is not None]
    # A class without a name, or two classes under one: generic names rather than a guess.
    if len(names) < num_classes or len(set(names)) < num_classes:
        return LabelSet.generic(num_classes)
    known = audioset()
    if tuple(names) == known.names:
        return known  # keeps AudioSet's machine ids
    return LabelSet.from_names(names, multi_label=True)


def from_transformers(
    config: dict, state: dict[str, torch.Tensor], *, preprocessor: dict | None = None,
    source: str = "transformers model",
) -> AST:
    """Build an AST from a transformers ASTForAudioClassification config and state dict."""
    try:
        patch = int(config.get("patch_size", 16))
        num_classes = len(config["id2label"]) if config.get("id2label") else state[
            "classifier.dense.weight"].shape[0]
        eps = float(config.get("layer_norm_eps", 1e-12))
        ast_config = ASTConfig(
            num_classes=num_classes,
            num_mel_bins=int(config.get("num_mel_bins", 128)),
            target_length=int(config.get("max_length", 1024)),
            patch_size=(patch, patch),
            stride=(int(config.get("frequency_stride", 10)), int(config.get("time_stride", 10))),
            embed_dim=int(config["hidden_size"]),
            depth=int(config["num_hidden_layers"]),
            num_heads=int(config["num_attention_heads"]),
            mlp_ratio=int(config["intermediate_size"]) / int(config["hidden_size"]),
            distilled=True,
            norm_eps=eps,
            head_eps=eps,
            preset=None,
        )
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        raise CheckpointError(f"{source}: config.json is not an AST config ({e})") from None
    if config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{source}: hidden_act {config['hidden_act']!r} is not supported (gelu only)")
    pre = preprocessor or {}
    features = FeatureConfig(
        sample_rate=int(pre.get("sampling_rate", 16000)),
        num_mel_bins=ast_config.num_mel_bins,
        target_length=ast_config.target_length,
        mean=float(pre.get("mean", AUDIOSET_STATS[0])),
        std=float(pre.get("std", AUDIOSET_STATS[1])),
    )
    labels = _labels_from_hf(config, num_classes)
    check_description({"config": ast_config.to_dict(), "features": features.to_dict(),
                       "labels": labels.to_dict()}, source=source)
    model = empty_model(ast_config, features=features, labels=labels)
    load_state(model, _hf_to_asttag(state), source=source)
    return model


def to_transformers(model: AST, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Export as a transformers ASTForAudioClassification directory (config + safetensors)."""
    from safetensors.torch import save_file

    c = model.config
    if c.patch_size[0] != c.patch_size[1]:
        raise CheckpointError(f"transformers' AST needs square patches; this model has {c.patch_size}")
    if not c.distilled:
        raise CheckpointError("transformers' AST always has a distillation token; this model has none")
    if c.norm_eps != c.head_eps:
        log.warning(
            "transformers' AST uses one layer_norm_eps for every LayerNorm: exporting with %g "
            "(this model's head uses %g; outputs may differ slightly)", c.norm_eps, c.head_eps,
        )
    names = list(model.labels.names)
    config = {
        "architectures": ["ASTForAudioClassification"],
        "model_type": "audio-spectrogram-transformer",
        "hidden_size": c.embed_dim,
        "num_hidden_layers": c.depth,
        "num_attention_heads": c.num_heads,
        "intermediate_size": int(c.embed_dim * c.mlp_ratio),
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": c.norm_eps,
        "patch_size": c.patch_size[0],
        "qkv_bias": True,
        "frequency_stride": c.stride[0],
        "time_stride": c.stride[1],
        "max_length": c.target_length,
        "num_mel_bins": c.num_mel_bins,
        "id2label": {str(i): n for i, n in enumerate(names)},
        "label2id": {n: i for i, n in enumerate(names)},
    }
    f = model.features
    preprocessor = {
        "feature_extractor_type": "ASTFeatureExtractor",
        "feature_size": 1,
        "sampling_rate": f.sample_rate,
        "num_mel_bins": f.num_mel_bins,
        "max_length": f.target_length,
        "do_normalize": True,
        "mean": f.mean,
        "std": f.std,
        "padding_value": 0.0,
        "return_attention_mask": False,
    }
    state = _asttag_to_hf(model.state_dict(), c.embed_dim)
    directory = Path(directory)
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        (tmp / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2), encoding="utf-8")
        save_file({k: v.detach().cpu() for k, v in state.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
    return directory


def _load_transformers_dir(directory: Path) -> AST:
    def read_json(name: str) -> dict | None:
        file = directory / name
        if not file.exists():
            return None
        try:
            return json.loads(file.read_text("utf-8"))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{file}: not valid JSON ({e})") from None

    config = read_json("config.json")
    if config is None:
        raise CheckpointError(f"{directory}: a transformers model directory needs config.json")
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).exists():
            state = read_tensors(directory / name)
            break
    else:
        raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin inside")
    return from_transformers(config, state, preprocessor=read_json("preprocessor_config.json"),
                             source=str(directory))


# --------------------------------------------------------------------------- detection


def checkpoint_format(path: str | Path) -> str:
    """'asttag', 'official' or 'transformers' for a local file or directory of one model.

    An ensemble bundle is none of these: `loading.detect_format` tells it apart first.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").exists():
            return "transformers"
        raise CheckpointError(f"{path}: a directory, but not a transformers model (no config.json)")
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.suffix == ".safetensors":
        try:
            header = safetensors_header(path)
        except CheckpointError:
            header = {}  # read_tensors below says what is wrong with the file
        if header.get("format") == FORMAT_NAME:  # damaged or not: load says what is wrong
            return "asttag"
    keys = read_tensors(path).keys()
    if any(k.startswith(("module.v.", "v.", "module.mlp_head.")) for k in keys):
        return "official"
    if any(k.startswith(_HF_PREFIX) for k in keys):
        raise CheckpointError(
            f"{path}: transformers weights without their config.json: pass the model directory"
        )
    raise CheckpointError(f"{path}: not an asttag, official AST or transformers AST checkpoint")


def load(path: str | Path, **official_options) -> AST:
    """Load a local checkpoint of one model (asttag, official or transformers) on the CPU.

    `official_options` (stride, target_length, ...) apply to official .pth files only. Files
    that may also be ensemble bundles are loaded by `loading.load`.
    """
    path = Path(path)
    kind = checkpoint_format(path)
    if kind == "asttag":
        return _load_asttag(path)
    if kind == "transformers":
        return _load_transformers_dir(path)
    return from_official(read_tensors(path), source=str(path), **official_options)
