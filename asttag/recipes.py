"""Training recipes: every number a training run depends on, kept as YAML.

The paper's recipes ship inside the package, in asttag/data/recipes/ (esc50, speechcommands, audioset-balanced,
audioset-full, and defaults for the folder and manifest layouts). A run writes its resolved
recipe into its run directory, which is all `--resume` needs to go on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .choices import PRECISIONS
from .features import AUDIOSET_STATS

__all__ = ["RecipeError", "Recipe", "RECIPE_DIR", "builtin_recipes", "load_recipe", "parse_override"]

# Package data, so that an installed asttag has them too (not only a source checkout).
RECIPE_DIR = Path(__file__).resolve().parent / "data" / "recipes"

LOSSES = ("bce", "ce")
METRICS = ("auto", "accuracy", "mAP")
INIT_KINDS = ("audioset", "imagenet", "none")
BASE_WIDTH = 768  # AST base's embedding width: narrower model starts count as `small`
_INTS = ("epochs", "batch_size", "num_mel_bins", "target_length", "warmup_steps", "lr_decay_start",
         "lr_decay_step", "freqm", "timem", "grad_accum", "seed")
_FLOATS = ("lr", "norm_mean", "norm_std", "weight_decay", "lr_decay", "mixup")
_BOOLS = ("noise", "balanced_sampler")


class RecipeError(ValueError):
    """A recipe that cannot be used: the message names the file or key and the problem."""


@dataclass(frozen=True)
class Recipe:
    """A training recipe. Epochs and optimiser steps count from 1."""

    name: str
    dataset: str  # a layout of asttag.datasets: esc50, speechcommands, audioset, folder, manifest
    epochs: int
    batch_size: int  # examples per optimiser step (summed over processes and accumulation)
    lr: float
    description: str = ""
    data_dir: str | None = None
    data: dict = field(default_factory=dict)  # options of the data-set reader (fold, ...)
    # Initialisation: audioset (the published AudioSet model), imagenet (DeiT), none (scratch),
    # or a checkpoint path / model name.
    init: str = "none"
    imagenet_weights: str | None = None
    lr_by_init: dict = field(default_factory=dict)  # init kind -> lr, where it differs
    size: str = "base384"
    model: dict = field(default_factory=dict)  # ASTConfig overrides (depth, embed_dim, ...)
    stride: tuple[int, int] = (10, 10)
    num_mel_bins: int = 128
    target_length: int = 1024
    norm_mean: float = AUDIOSET_STATS[0]
    norm_std: float = AUDIOSET_STATS[1]
    weight_decay: float = 5e-7
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 0
    lr_decay: float = 1.0  # MultiStepLR gamma, milestones range(lr_decay_start, 1000, lr_decay_step)
    lr_decay_start: int = 1
    lr_decay_step: int = 1
    freqm: int = 0
    timem: int = 0
    mixup: float = 0.0
    noise: bool = False
    loss: str = "bce"
    metric: str = "auto"  # auto: accuracy for single-label data, mAP for multi-label data
    balanced_sampler: bool = False
    average_epochs: tuple[int, int] | None = None  # weight averaging over [start, end]
    grad_accum: int = 1
    precision: str = "auto"
    seed: int = 0
    valid_batch_size: int | None = None  # default: batch_size
    # Keys set over the recipe (flags, --set; `with_overrides` records them): a model the run
    # starts from keeps its own mel bins and patch strides unless these name them.
    overridden: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._check_types()
        object.__setattr__(self, "overridden", tuple(self.overridden))
        for name in ("stride", "betas", "average_epochs"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, (list, tuple)) or len(value) != 2:
                    raise RecipeError(f"recipe {self.name}: {name} must be a pair, got {value!r}")
                object.__setattr__(self, name, tuple(value))
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr > 0, "lr must be positive"),
            (self.grad_accum >= 1, "grad_accum must be at least 1"),
            (self.lr_decay_step >= 1, "lr_decay_step must be at least 1"),
            (0.0 < self.lr_decay <= 1.0, "lr_decay must lie in (0, 1]"),
            (self.warmup_steps >= 0, "warmup_steps must not be negative"),
            (0.0 <= self.mixup <= 1.0, "mixup must lie in [0, 1]"),
            (self.freqm >= 0 and self.timem >= 0, "freqm and timem must not be negative"),
            (self.norm_std > 0, "norm_std must be positive"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}"),
            (self.metric in METRICS, f"metric must be one of {', '.join(METRICS)}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.valid_batch_size is None or self.valid_batch_size >= 1,
             "valid_batch_size must be at least 1"),
            (isinstance(self.data, dict) and isinstance(self.model, dict)
             and isinstance(self.lr_by_init, dict), "data, model and lr_by_init must be mappings"),
        ]
        for ok, message in checks:
            if not ok:
                raise RecipeError(f"recipe {self.name}: {message}")
        if self.average_epochs is not None:
            start, end = self.average_epochs
            if not 1 <= start <= end:
                raise RecipeError(
                    f"recipe {self.name}: average_epochs [{start}, {end}] must satisfy 1 <= start <= end"
                )

    def _check_types(self) -> None:
        for name in _INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise RecipeError(f"recipe {self.name}: {name} must be a whole number, got {value!r}")
        for name in _FLOATS:
            value = getattr(self, name)
            try:
                # YAML reads 1e-5 (no dot) as a string: accept any float spelling.
                object.__setattr__(self, name, float(value))
            except (TypeError, ValueError):
                raise RecipeError(f"recipe {self.name}: {name} must be a number, got {value!r}") from None
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise RecipeError(f"recipe {self.name}: {name} must be true or false")

    @property
    def init_kind(self) -> str:
        """audioset, imagenet, none, or checkpoint (a path or model name)."""
        return self.init if self.init in INIT_KINDS else "checkpoint"

    def resolved(self, init: Any = None) -> Recipe:
        """The recipe with what its start calls for made explicit.

        `init` is the ASTConfig of the model a `checkpoint` start loads. That model keeps its own
        mel bins and patch strides (unless `overridden` names them), and an encoder narrower than
        AST base (such as the embedded default) takes the learning rate `lr_by_init` gives
        `small` starts; the rest take the one for their init kind, else `lr`.
        """
        kind, layout = self.init_kind, {}
        if init is not None and kind == "checkpoint":
            if init.embed_dim < BASE_WIDTH:
                kind = "small"
            layout = {key: value for key, value in (("num_mel_bins", init.num_mel_bins),
                                                    ("stride", tuple(init.stride)))
                      if key not in self.overridden}
        return self.replace(lr=float(self.lr_by_init.get(kind, self.lr)), lr_by_init={}, **layout)

    def replace(self, **changes) -> Recipe:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise RecipeError(f"unknown recipe key(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for name in ("stride", "betas", "average_epochs", "overridden"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict, *, source: str) -> Recipe:
        if not isinstance(data, dict):
            raise RecipeError(f"{source}: a recipe must be a mapping of keys to values")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RecipeError(f"{source}: unknown recipe key(s) {', '.join(unknown)}")
        missing = sorted(n for n in ("name", "dataset", "epochs", "batch_size", "lr") if n not in data)
        if missing:
            raise RecipeError(f"{source}: missing recipe key(s) {', '.join(missing)}")
        try:
            return cls(**data)
        except TypeError as e:  # a value of the wrong type compared or formatted
            raise RecipeError(f"{source}: {e}") from None

    def with_overrides(self, overrides: dict) -> Recipe:
        """Apply dotted-key overrides: {"lr": 1e-4, "data.fold": 2, "model.depth": 2}."""
        data = self.to_dict()
        for key, value in overrides.items():
            head, _, rest = key.partition(".")
            if head not in data:
                raise RecipeError(f"unknown recipe key {head!r} in override {key!r}")
            if rest:
                if not isinstance(data[head], dict):
                    raise RecipeError(f"recipe key {head!r} is not a mapping; cannot set {key!r}")
                data[head] = {**data[head], rest: value}
            else:
                data[head] = value
        data["overridden"] = sorted({*self.overridden, *(k.partition(".")[0] for k in overrides)})
        return Recipe.from_dict(data, source="recipe overrides")


def builtin_recipes() -> list[str]:
    """Names of the shipped recipes."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A shipped recipe by name (see builtin_recipes) or a recipe YAML file."""
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        candidate = RECIPE_DIR / f"{name_or_path}.yaml"
        if not candidate.is_file():
            known = ", ".join(builtin_recipes()) or f"none found in {RECIPE_DIR}"
            raise RecipeError(f"{name_or_path}: no such recipe file or shipped recipe (shipped: {known})")
        path = candidate
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"{path}: cannot read recipe ({e})") from None
    return Recipe.from_dict(data, source=str(path))


def parse_override(text: str) -> tuple[str, object]:
    """'key=value' with a YAML value: 'mixup=0.5', 'data.fold=2', 'stride=[12, 12]'."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {text!r} is not KEY=VALUE")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise RecipeError(f"override {text!r}: the value is not valid YAML ({e})") from None
