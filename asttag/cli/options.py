"""Options several commands share, declared once, and what is read from them.

`train`, `finetune` and `distill` lay the options a user gave over a recipe (`recipe_overrides`),
`evaluate` and `ensemble evaluate` read a data set and run models the same way. Which options
were given comes from Click's parameter sources, never from comparing values with defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

import typer

from ..choices import DATASET_LAYOUTS, DEFAULT_DEVICE, Precision
from ..writers import WRITERS
from .app import EXIT_USAGE, argument_name, fail

# --------------------------------------------------------------------------- choices

# The CLI's choices are the core's (Typer offers a Literal's values as choices; the others are
# asttag.choices' Literals). The writers are a registry, known only when it has been filled.
if TYPE_CHECKING:
    FormatName = str
else:
    FormatName = Literal[tuple(WRITERS)]

# --------------------------------------------------------------------------- numbers


def number(*, above: float | None = None, at_least: float | None = None,
           at_most: float | None = None, whole: bool = False) -> Callable[[object], float]:
    """The parser of a numeric option (Typer's `parser=`): anything else is a usage error that
    names the option and the range (`Invalid value for '--hop': inf: expected a finite number
    above 0`). nan and infinities are never numbers here."""
    if at_least is not None and at_most is not None:
        bounds = [f"from {at_least:g} to {at_most:g}"]
    else:
        bounds = [f"above {above:g}" if above is not None else "",
                  f"at least {at_least:g}" if at_least is not None else "",
                  f"at most {at_most:g}" if at_most is not None else ""]
    wanted = " and ".join(b for b in bounds if b)
    wanted = ("a whole number" if whole else "a finite number") + (f" {wanted}" if wanted else "")

    def parse(text: object) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise typer.BadParameter(f"{text}: expected {wanted}") from None
        if (not math.isfinite(value) or (whole and not value.is_integer())
                or (above is not None and value <= above)
                or (at_least is not None and value < at_least)
                or (at_most is not None and value > at_most)):
            raise typer.BadParameter(f"{text}: expected {wanted}")
        return int(value) if whole else value

    return parse


# --------------------------------------------------------------------------- what was given


def given(ctx: typer.Context) -> dict[str, Any]:
    """The parameters the user set on the command line (or through the environment)."""
    # By name: Typer ships its own copy of Click, whose ParameterSource is not click's.
    typed = ("COMMANDLINE", "ENVIRONMENT")
    return {name: value for name, value in ctx.params.items()
            if getattr(ctx.get_parameter_source(name), "name", None) in typed}


def spelled(ctx: typer.Context, name: str) -> str:
    """How the parameter `name` is written on this command line (`--lr`, `DATASET`)."""
    param = next(p for p in ctx.command.params if p.name == name)
    if param.param_type_name == "argument":
        return argument_name(param)
    return max(param.opts, key=len)


def refuse_given(ctx: typer.Context, *, allowed: set[str], reason: str) -> None:
    """A usage error naming every given option outside `allowed`."""
    named = [spelled(ctx, name) for name in given(ctx) if name not in allowed]
    if named:
        fail(f"{reason}; drop {', '.join(named)}", code=EXIT_USAGE)


# --------------------------------------------------------------------------- data options


def parse_data_options(items: list[str] | None) -> dict[str, object]:
    """KEY=VALUE pairs as reader options: true/false, whole and decimal numbers are typed."""
    options: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--data-option {item!r}: expected KEY=VALUE", code=EXIT_USAGE)
        options[key] = _typed(value)
    return options


def _typed(value: str) -> object:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


# --------------------------------------------------------------------------- recipes

# Options that set the recipe value of their own name.
_RECIPE_FIELDS = ("dataset", "data_dir", "init", "imagenet_weights", "size", "epochs", "batch_size",
                  "grad_accum", "seed", "precision")


def recipe_overrides(options: dict[str, Any], *, stride: tuple[int, int]) -> dict[str, object]:
    """Recipe overrides (`Recipe.with_overrides`) from the training options given.

    `--set` items come first, so a flag wins over a `--set` of the same key; `stride` is the
    recipe's, for a flag that sets one of its two axes.
    """
    from ..recipes import parse_override

    overrides: dict[str, object] = dict(parse_override(item) for item in options.get("set_") or [])
    data = parse_data_options(options.get("data_option"))
    if "valid" in data and "valid_fraction" not in data:
        # A validation manifest replaces the recipe's held-out fraction (readers take one).
        data["valid_fraction"] = None
    if options.get("fold") is not None:
        data["fold"] = options["fold"]
    overrides.update({f"data.{key}": value for key, value in data.items()})
    for name in _RECIPE_FIELDS:
        if options.get(name) is not None:
            value = options[name]
            overrides[name] = str(value) if isinstance(value, Path) else value
    if options.get("fstride") is not None or options.get("tstride") is not None:
        overrides["stride"] = [options.get("fstride") or stride[0], options.get("tstride") or stride[1]]
    if options.get("lr") is not None:
        overrides.update(lr=options["lr"], lr_by_init={})
    return overrides


def build_recipe(name: str, options: dict[str, Any]):
    """The named recipe with the training options given laid over it."""
    from ..recipes import RecipeError, load_recipe

    try:
        base = load_recipe(name)
        return base.with_overrides(recipe_overrides(options, stride=base.stride))
    except RecipeError as e:
        fail(str(e), code=EXIT_USAGE)


# --------------------------------------------------------------------------- training options

DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", "-d", help="The data set: its folder, or its manifest / AST JSON file.")]
DataOptions = Annotated[Optional[list[str]], typer.Option(
    "--data-option", "-D", help="KEY=VALUE option for the layout's reader, e.g. valid=val.csv, "
    "label_file=labels.csv, valid_fraction=0.2, audio_dir=clips/, fold=3 (repeatable).",
    show_default=False)]
Init = Annotated[Optional[str], typer.Option(
    "--init", help="audioset (the published AudioSet model, AST-P), imagenet (DeiT, AST-S), "
    "none (from scratch), or a checkpoint path / model name. Default: the recipe's.")]
ImagenetWeights = Annotated[Optional[Path], typer.Option(
    "--imagenet-weights", help="Local DeiT weights (timm model.safetensors or .pth) for --init "
    "imagenet; without it timm downloads them.")]
Size = Annotated[Optional[str], typer.Option(
    "--size", help="Size preset for imagenet/none: tiny224, small224, base224, base384.")]
COUNT = number(whole=True, at_least=1)  # how many of something: 1 or more
SECONDS = number(above=0)  # a stretch of time
SCORE = number(at_least=0, at_most=1)  # a probability
FStride = Annotated[Optional[int], typer.Option(
    "--fstride", parser=COUNT, metavar="N", help="Patch stride along frequency.")]
TStride = Annotated[Optional[int], typer.Option(
    "--tstride", parser=COUNT, metavar="N", help="Patch stride along time.")]
Epochs = Annotated[Optional[int], typer.Option(
    "--epochs", parser=COUNT, metavar="N", help="Epochs to train.")]
LearningRate = Annotated[Optional[float], typer.Option(
    "--lr", parser=number(above=0), metavar="RATE",
    help="Peak learning rate (replaces the recipe's per-init rates).")]
TrainBatchSize = Annotated[Optional[int], typer.Option(
    "--batch-size", "-b", parser=COUNT, metavar="N",
    help="Examples per optimiser step, over all processes.")]
GradAccum = Annotated[Optional[int], typer.Option(
    "--grad-accum", parser=COUNT, metavar="N",
    help="Forward passes per optimiser step (the batch is split).")]
Seed = Annotated[Optional[int], typer.Option(
    "--seed", parser=number(whole=True, at_least=0), metavar="N",
    help="Seed of every random choice.")]
Out = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Run directory to create (default: runs/<recipe>-<time>).")]
RecipeOption = Annotated[Optional[str], typer.Option(
    "--recipe", help="A shipped recipe name or a recipe YAML file.")]
Sets = Annotated[Optional[list[str]], typer.Option(
    "--set", help="KEY=VALUE recipe override, YAML-typed (mixup=0.5, model.depth=6); repeatable.")]
Resume = Annotated[Optional[Path], typer.Option(
    "--resume", help="Go on with this run directory from its last completed epoch.")]
TrainPrecision = Annotated[Optional[Precision], typer.Option(
    "--precision", help="auto (bf16/fp16 on CUDA, fp32 on the CPU), fp32, bf16 or fp16.")]
CacheDir = Annotated[Optional[Path], typer.Option(
    "--cache-dir", help="Keep decoded clips and log-mel frames here: later epochs skip decoding.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or epoch lines.")]

# Options that run a job without changing what it computes: a resumed run may take them.
RUN_OPTIONS = {"resume", "device", "workers", "cache_dir", "quiet"}

# --------------------------------------------------------------------------- shared by all

Device = Annotated[str, typer.Option(
    "--device", metavar="DEVICE", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
DEVICE = DEFAULT_DEVICE
Workers = Annotated[int, typer.Option(
    "--workers", "-j", parser=number(whole=True, at_least=0), metavar="N",
    help="Audio decoding processes.")]

# --------------------------------------------------------------------------- tagging jobs (tag, embed)

Threads = Annotated[Optional[int], typer.Option(
    "--threads", parser=COUNT, metavar="N",
    help="CPU threads for the model (default: torch's, one per core).")]
JobWorkers = Annotated[int, typer.Option(
    "--workers", "-j", parser=number(whole=True, at_least=0), metavar="N",
    help="Threads decoding and computing features while the model runs (0: in turn).")]
JobQuiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
ErrorsLog = Annotated[Optional[Path], typer.Option(
    "--errors-log", metavar="FILE",
    help="Write the failed files and why, one per line (path TAB reason).")]

# --------------------------------------------------------------------------- evaluation options

Layout = Annotated[str, typer.Option(
    "--layout", "-l", help=f"Data set layout: {', '.join(DATASET_LAYOUTS)}, "
    "or auto (guessed from DATA).")]
Split = Annotated[Optional[str], typer.Option(
    "--split", help="train, valid or test (default: test, else valid, else train: the first "
    "the data set has).", show_default=False)]
EvalBatchSize = Annotated[int, typer.Option(
    "--batch-size", "-b", parser=COUNT, metavar="N", help="Clips per forward pass.")]
EvalPrecision = Annotated[Precision, typer.Option(
    "--precision", help="fp32, bf16, fp16 or auto (bf16/fp16 on CUDA, fp32 on the CPU).")]
PerClass = Annotated[bool, typer.Option("--per-class", help="Also report AP and AUC per label.")]
SavePredictions = Annotated[Optional[Path], typer.Option(
    "--save-predictions", help="Keep the scores per clip (.npz) for `asttag ensemble evaluate "
    "--from-predictions`.", show_default=False)]


class OutputFormat(str, Enum):
    auto = "auto"
    table = "table"
    json = "json"


ReportFormat = Annotated[OutputFormat, typer.Option(
    "--format", "-f", help="table or json; auto: a table on a terminal, JSON otherwise.")]
