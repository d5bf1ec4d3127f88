"""What a run starts from: the recipe's data and its initial model."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..checkpoint import load_state
from ..datasets import DatasetSplits, load_dataset
from ..errors import about
from ..features import FeatureConfig
from ..hub import load_model
from ..labels import LabelSet
from ..model import AST, ASTConfig
from ..pretrained import audioset_init, imagenet_init
from ..recipes import Recipe
from .interface import TrainingError

__all__ = ["AUDIOSET_MODEL", "load_splits", "feature_config", "resolve", "build_model"]

log = logging.getLogger(__name__)

AUDIOSET_MODEL = "audioset-10-10-0.4593"  # the published model AST-P starts from


def load_splits(recipe: Recipe) -> DatasetSplits:
    """The data set a recipe trains on (its data_dir, dataset layout and reader options)."""
    if recipe.data_dir is None:
        raise about(TrainingError(f"recipe {recipe.name} names no data"), "data_dir")
    options = {k: v for k, v in recipe.data.items() if v is not None}
    if recipe.dataset == "audioset" and Path(recipe.data_dir).suffix.lower() == ".json":
        # `train` picks the segments CSVs of the folder layout; a manifest is its own train list.
        options.pop("train", None)
    splits = load_dataset(recipe.dataset, recipe.data_dir, **options)
    if not splits.train:
        raise TrainingError(f"{recipe.data_dir}: the training split is empty")
    present = sorted({i for e in splits.train for i in e.labels})
    hard = all(e.soft is None for e in splits.train)  # soft targets spread over every class
    if hard and not splits.labels.multi_label and len(present) < 2:
        # Softmax over one class is 1 whatever the input: such a run "learns" nothing and
        # reports an accuracy of 1.0.
        names = ", ".join(splits.labels.names[i] for i in present) or "none"
        raise TrainingError(f"{recipe.data_dir}: the training split has {len(present)} class "
                            f"({names}); telling classes apart needs at least two")
    return splits


def feature_config(recipe: Recipe) -> FeatureConfig:
    return FeatureConfig(num_mel_bins=recipe.num_mel_bins, target_length=recipe.target_length,
                         mean=recipe.norm_mean, std=recipe.norm_std)


def _init_model(recipe: Recipe) -> AST:
    """The model a recipe's `audioset` or checkpoint start transfers from."""
    source = load_model(AUDIOSET_MODEL if recipe.init == "audioset" else recipe.init, device="cpu")
    if not isinstance(source, AST):
        raise TrainingError(f"{recipe.init}: an ensemble bundle has no one encoder to start from; "
                            "give one model")
    return source


def resolve(recipe: Recipe) -> tuple[Recipe, AST | None]:
    """The recipe made explicit for its start (`Recipe.resolved`) and, for a start from a model
    file or name, that model (loaded once, for `build_model`)."""
    if recipe.init_kind != "checkpoint":
        return recipe.resolved(), None
    source = _init_model(recipe)
    return recipe.resolved(source.config), source


def build_model(recipe: Recipe, labels: LabelSet, *, source: AST | None = None) -> AST:
    """The model a recipe starts from: a head for `labels`, the encoder as `recipe.init` says.

    none: random (seeded by recipe.seed); imagenet: DeiT weights (recipe.imagenet_weights, else
    a timm download); audioset: the published AudioSet model; anything else: a checkpoint path
    or model name (`source`, when `resolve` loaded it already). Transferred encoders keep their
    own architecture (size and model overrides apply to none and imagenet only); a checkpoint
    with this very label set and input keeps its head too, so a run can go on from another.
    """
    features = feature_config(recipe)
    torch.manual_seed(recipe.seed)
    if recipe.init in ("none", "imagenet"):
        config = ASTConfig.from_preset(
            recipe.size,
            **{"num_classes": len(labels), "num_mel_bins": recipe.num_mel_bins,
               "target_length": recipe.target_length, "stride": recipe.stride, **recipe.model},
        )
        if recipe.init == "none":
            return AST(config, features=features, labels=labels)
        return imagenet_init(config, weights=recipe.imagenet_weights, features=features, labels=labels)
    source = source if source is not None else _init_model(recipe)
    if recipe.model:
        log.warning("recipe %s: model overrides are ignored: the architecture comes from %s",
                    recipe.name, recipe.init)
    config = source.config.replace(num_classes=len(labels), num_mel_bins=recipe.num_mel_bins,
                                   target_length=recipe.target_length, stride=recipe.stride)
    if source.config == config and source.labels == labels:
        model = AST(config, features=features, labels=labels)
        load_state(model, source.state_dict(), source=recipe.init)
        return model
    return audioset_init(source, config, labels=labels, features=features)
