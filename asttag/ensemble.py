"""Ensembles: several models' probabilities averaged, used like one model.

The paper's Ensemble-S averages runs with different seeds; Ensemble-M adds models with other
patch strides. Members may differ in size, strides and input length, as long as they share one
label set and the same spectrogram (sample rate, mel bins, frame length and shift). An `Ensemble`
offers the interface taggers and evaluators use (`features`, `labels`, `predict`), and a bundle
stores it as one self-describing .safetensors file that loads wherever a model file does.
Saved predictions are ensembled in evaluation.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .checkpoint import (
    CheckpointError,
    checked_header,
    load_state,
    model_from_description,
    read_tensors,
    safetensors_header,
)
from .features import FeatureConfig, convert_input
from .fileformat import write_safetensors
from .labels import LabelSet, label_problems
from .model import AST

__all__ = [
    "BUNDLE_FORMAT",
    "EnsembleError",
    "Ensemble",
    "save_bundle",
    "read_bundle_metadata",
    "is_bundle",
    "load_bundle",
]

BUNDLE_FORMAT = "asttag-ensemble"
BUNDLE_VERSION = 1
# Feature settings that make two spectrograms the same grid of numbers up to normalisation and
# length; members that differ in any of them cannot share one input.
SHARED_FEATURES = ("sample_rate", "num_mel_bins", "frame_length_ms", "frame_shift_ms")


class EnsembleError(ValueError):
    """Models or predictions that cannot be ensembled: the message names what differs."""


class Ensemble(nn.Module):
    """Member ASTs sharing one label set; `predict` averages their probabilities (a `TaggingModel`).

    The ensemble's input (`features`) is that of the member with the longest input (the first
    such member on a tie), so no member is shown less than it was trained on; each member gets
    it converted to its own length and normalisation. Members that are ensembles themselves are
    flattened into their members, each weighing the same. There is no `forward`: an ensemble
    has no logits, only probabilities.
    """

    def __init__(self, members: Sequence[AST | Ensemble]) -> None:
        super().__init__()
        flat = [m for model in members for m in _members_of(model)]
        if not flat:
            raise EnsembleError("an ensemble needs at least one member")
        _check_members(flat)
        # A ModuleList registers the members (state dict keys members.<i>.*); torch types its
        # items as Module, these are the ASTs just checked.
        self.members: Sequence[AST] = nn.ModuleList(flat)  # type: ignore[assignment]
        self.labels: LabelSet = flat[0].labels
        self.features: FeatureConfig = max(flat, key=lambda m: m.features.target_length).features
        self.extra: dict = {}  # what `ensemble create` records: the members' sources

    def predict(self, fbank: torch.Tensor) -> torch.Tensor:
        """Mean class probabilities (B, classes) of normalised log-mel input (B, T, F).

        Summed in float64, so an ensemble of copies of one model returns that model's
        probabilities bit for bit.
        """
        outputs = [m.predict(convert_input(fbank, self.features, m.features)) for m in self.members]
        total = sum((p.to(torch.float64) for p in outputs[1:]), start=outputs[0].to(torch.float64))
        return (total / len(outputs)).to(outputs[0].dtype)


def _members_of(model: AST | Ensemble) -> list[AST]:
    return list(model.members) if isinstance(model, Ensemble) else [model]


def _check_members(members: Sequence[AST]) -> None:
    first = members[0]
    for i, member in enumerate(members[1:], start=1):
        problems = label_problems(first.labels, member.labels)
        problems += [
            f"features {key}: {getattr(first.features, key)} vs {getattr(member.features, key)}"
            for key in SHARED_FEATURES
            if getattr(first.features, key) != getattr(member.features, key)
        ]
        if problems:
            raise EnsembleError(f"member {i} does not fit member 0: " + "; ".join(problems))


# --------------------------------------------------------------------------- bundles


def save_bundle(ensemble: Ensemble, path: str | Path, *, extra: dict | None = None) -> Path:
    """Write `ensemble` as one .safetensors file, atomically.

    Tensors are the ensemble's state dict (`members.<i>.<key>`); the metadata lists each
    member's config, features, labels and training facts, so the file describes itself.
    """
    members = [
        {
            "config": m.config.to_dict(),
            "features": m.features.to_dict(),
            "labels": m.labels.to_dict(),
            "extra": m.extra,
        }
        for m in ensemble.members
    ]
    fields = {"members": json.dumps(members),
              "extra": json.dumps(extra if extra is not None else ensemble.extra)}
    # clone: safetensors refuses tensors sharing memory, which one module listed twice does.
    tensors = {k: v.detach().to("cpu").clone() for k, v in ensemble.state_dict().items()}
    return write_safetensors(path, tensors, format_name=BUNDLE_FORMAT,
                             format_version=BUNDLE_VERSION, fields=fields)


def is_bundle(path: str | Path) -> bool:
    """Whether `path` is a .safetensors file marked as an asttag ensemble bundle."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    try:
        return safetensors_header(path).get("format") == BUNDLE_FORMAT
    except CheckpointError:
        return False


def read_bundle_metadata(path: str | Path) -> dict:
    """The decoded metadata of a bundle: {"members": [...], "extra": {...}}."""
    path = Path(path)
    raw = checked_header(path, format_name=BUNDLE_FORMAT, max_version=BUNDLE_VERSION,
                         what="an asttag ensemble bundle")
    try:
        return {"members": json.loads(raw["members"]), "extra": json.loads(raw.get("extra", "{}"))}
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: damaged ensemble metadata ({e})") from None


def load_bundle(path: str | Path) -> Ensemble:
    """The `Ensemble` stored in a bundle, on the CPU; every tensor is accounted for."""
    path = Path(path)
    meta = read_bundle_metadata(path)
    tensors = read_tensors(path)
    members = []
    for i, described in enumerate(meta["members"]):
        member = model_from_description(described, source=f"{path}: member {i}")
        prefix = f"members.{i}."
        state = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        load_state(member, state, source=f"{path} member {i}")
        member.extra = dict(described.get("extra") or {})
        members.append(member)
    prefixes = tuple(f"members.{i}." for i in range(len(members)))
    stray = [k for k in tensors if not k.startswith(prefixes)]
    if stray:
        raise CheckpointError(f"{path}: tensors of no listed member: {', '.join(stray[:8])}")
    try:
        ensemble = Ensemble(members)
    except EnsembleError as e:
        raise CheckpointError(f"{path}: {e}") from None
    ensemble.extra = meta["extra"]
    return ensemble
