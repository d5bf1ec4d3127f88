"""`asttag models`: list, inspect, convert, download and export models."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from .app import EXIT_USAGE, PlainGroup, app, check_output_file, console, fail
from .options import COUNT, number

models_app = typer.Typer(cls=PlainGroup, help="List, inspect, convert, download and export models.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(models_app, name="models")


class TargetFormat(str, Enum):
    asttag = "asttag"
    transformers = "transformers"


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


@models_app.command("list")
def list_models(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The named models: the embedded default and the published AST models.

    A table on a terminal; in a pipe, one tab-separated row per model (name first).
    """
    import sys

    from ..catalog import MODELS, cached_path, embedded_default

    rows: list[dict[str, Any]] = []  # JSON records
    for m in MODELS.values():
        if m.hub_id is None:
            status = "embedded" if embedded_default() else "not shipped yet"
        else:
            status = "cached" if cached_path(m.name).exists() else "downloadable"
        rows.append({"name": m.name, "description": m.description, "hub_id": m.hub_id,
                     "size_mb": m.size_mb, "metric": m.metric, "status": status})
    if as_json:
        _print_json(rows)
        return
    cells = [[r["name"], r["status"], str(r["size_mb"] or "-"), r["metric"] or "-",
              r["hub_id"] or "-", r["description"]] for r in rows]
    if not sys.stdout.isatty():
        print("".join("\t".join(row) + "\n" for row in cells), end="")
        return
    from rich.console import Console
    from rich.table import Column, Table

    # The name is what one types next: never cut; the description wraps instead (the hub id
    # is in the plain rows and the JSON).
    table = Table(Column("name", no_wrap=True), Column("status", no_wrap=True),
                  Column("MB", no_wrap=True), Column("metric", no_wrap=True), "description")
    for name, status, size, metric, _, description in cells:
        table.add_row(name, status, size, metric, description)
    Console().print(table)


def describe(model, *, source: str, fmt: str) -> dict:
    """What a loaded model or ensemble is, as plain data."""
    from ..ensemble import Ensemble
    from ..thresholds import recommended

    f, labels = model.features, model.labels
    data = {
        "source": source,
        "format": fmt,
        "parameters": sum(p.numel() for p in model.parameters()),
        "features": {**f.to_dict(), "window_seconds": f.window_seconds},
        "labels": {"count": len(labels), "multi_label": labels.multi_label,
                   "first": list(labels.names[:5])},
        "event_threshold": recommended(model).to_dict(),
    }
    if isinstance(model, Ensemble):
        data["members"] = [_architecture(m.config) for m in model.members]
    else:
        data["architecture"] = _architecture(model.config)
        data["extra"] = model.extra
    return data


def _architecture(config) -> dict:
    return {**config.to_dict(), "grid": list(config.grid), "num_patches": config.num_patches}


def _architecture_line(a: dict) -> str:
    return (f"{a['preset'] or 'custom'}: dim {a['embed_dim']}, depth {a['depth']}, "
            f"heads {a['num_heads']}, patch {a['patch_size'][0]}x{a['patch_size'][1]}, "
            f"stride {a['stride'][0]}/{a['stride'][1]}, grid {a['grid'][0]}x{a['grid'][1]} "
            f"= {a['num_patches']} patches")


@models_app.command("info")
def info(
    source: str = typer.Argument(..., help="A checkpoint file, transformers directory or model name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Print what a checkpoint holds: architecture, features, labels, training facts."""
    from ..checkpoint import CheckpointError
    from ..hub import HubError, load_model
    from ..loading import detect_format

    try:
        fmt = detect_format(source) if Path(source).exists() else "named"
        model = load_model(source, device="cpu")
    except (CheckpointError, HubError) as e:
        fail(str(e))
    data = describe(model, source=source, fmt=fmt)
    if as_json:
        _print_json(data)
        return
    features, labels = data["features"], data["labels"]
    lines = [f"source       {source} ({fmt})"]
    if "members" in data:
        lines += [f"member {i:<5} {_architecture_line(a)}" for i, a in enumerate(data["members"])]
    else:
        lines.append(f"architecture {_architecture_line(data['architecture'])}")
    lines += [
        f"parameters   {data['parameters']:,}",
        (f"input        {features['target_length']} frames x {features['num_mel_bins']} mel bins "
         f"({features['window_seconds']:.2f} s at {features['sample_rate']} Hz), "
         f"norm mean {features['mean']:.4f} std {features['std']:.4f}"),
        f"labels       {labels['count']} "
        f"({'multi-label' if labels['multi_label'] else 'single-label'}): "
        + ", ".join(labels["first"]) + (", ..." if labels["count"] > 5 else ""),
        (f"threshold    {data['event_threshold']['value']:g} for events "
         f"({data['event_threshold']['rule']})"),
    ]
    if data.get("extra"):
        lines.append(f"extra        {json.dumps(data['extra'])}")
    print("\n".join(lines))


@models_app.command("convert")
def convert(
    src: str = typer.Argument(..., help="An official .pth, a transformers directory or an asttag file."),
    dst: Path = typer.Argument(..., help="Where to write the converted model."),
    to: TargetFormat = typer.Option(TargetFormat.asttag, "--to", help="Output format."),
    stride: Optional[tuple[int, int]] = typer.Option(
        None, "--stride", help="Official .pth only: frequency and time stride (default: from the "
                               "file name, else the only published stride that fits)."),
    target_length: Optional[int] = typer.Option(
        None, "--target-length", parser=COUNT, metavar="FRAMES",
        help="Official .pth only: input frames (default: the only published length that fits)."),
    mel_bins: int = typer.Option(128, "--mel-bins", parser=COUNT, metavar="N", help="Official .pth only: mel bins."),
    labels: Optional[Path] = typer.Option(
        None, "--labels", help="Official .pth only: a label CSV (index,mid,display_name as AudioSet's "
                               "class_labels_indices.csv) or one name a line (default: by head size)."),
    mean: Optional[float] = typer.Option(
        None, "--mean", parser=number(), metavar="X", help="Official .pth only: normalisation mean (default: by head size)."),
    std: Optional[float] = typer.Option(
        None, "--std", parser=number(above=0), metavar="X",
        help="Official .pth only: normalisation std (default: by head size)."),
    multi_label: Optional[bool] = typer.Option(
        None, "--multi-label/--single-label",
        help="Official .pth only: sigmoid or softmax scores (default: single-label for 35 and 50 "
             "classes, else multi-label)."),
    force: bool = typer.Option(False, "--force", help="Overwrite DST."),
) -> None:
    """Convert an official or transformers checkpoint to the asttag format (or back)."""
    from .. import checkpoint, loading
    from ..labels import read_label_file

    if to is TargetFormat.asttag:
        check_output_file(dst, force=force)
    elif dst.exists() and not force:
        fail(f"{dst} exists; pass --force to overwrite it", code=EXIT_USAGE)
    given = {"--stride": stride, "--target-length": target_length, "--labels": labels,
             "--mean": mean, "--std": std, "--multi-label/--single-label": multi_label,
             "--mel-bins": mel_bins if mel_bins != 128 else None}
    try:
        kind = loading.detect_format(src)
        if kind == "ensemble":
            fail(f"{src}: an ensemble bundle; bundles are used as they are, not converted")
        if kind != "official":
            named = [flag for flag, value in given.items() if value is not None]
            if named:
                fail(f"{', '.join(named)}: for official .pth files only; {src} is not one "
                     f"({kind} format)", code=EXIT_USAGE)
            model = checkpoint.load(src)
        else:
            label_set = read_label_file(labels) if labels else None
            model = checkpoint.load(src, stride=stride, target_length=target_length,
                                    num_mel_bins=mel_bins, labels=label_set, mean=mean, std=std,
                                    multi_label=multi_label)
        if to is TargetFormat.asttag:
            checkpoint.save(model, dst, extra={**getattr(model, "extra", {}), "converted_from": src})
        else:
            checkpoint.to_transformers(model, dst, overwrite=force)
    except checkpoint.AmbiguousLayout as e:
        fail(f"{e}; pass --stride F T and --target-length N")
    except (checkpoint.CheckpointError, ValueError, OSError) as e:
        fail(e)
    console.print(f"wrote {dst} ({to.value}, {model.num_parameters:,} parameters, "
                  f"{len(model.labels)} labels)", highlight=False)


@models_app.command("pull")
def pull(
    name: str = typer.Argument(..., help="A name from `asttag models list` or a hub id."),
    force: bool = typer.Option(False, "--force", help="Download again even if cached."),
) -> None:
    """Download a published model into the cache and convert it to the asttag format."""
    from ..hub import HubError
    from ..hub import pull as pull_model

    try:
        path = pull_model(name, force=force)
    except HubError as e:
        fail(str(e))
    print(path)


@models_app.command("export")
def export(
    source: str = typer.Argument(..., help="A model name, checkpoint file or transformers directory."),
    dst: Path = typer.Argument(..., help="The .onnx file to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite DST."),
) -> None:
    """Export a model to ONNX (input: the normalised fbank; dynamic batch; needs asttag[onnx])."""
    from ..checkpoint import CheckpointError
    from ..export import ExportError, export_onnx
    from ..hub import HubError, load_model
    from ..model import AST

    if dst.exists() and not force:
        fail(f"{dst} exists; pass --force to overwrite it", code=EXIT_USAGE)
    try:
        model = load_model(source)
    except (CheckpointError, HubError) as e:
        fail(str(e))
    try:
        export_onnx(model, dst)
    except ExportError as e:
        fail(f"{source}: {e}")
    assert isinstance(model, AST)  # export_onnx exports nothing else
    console.print(f"wrote {dst} (ONNX, {model.num_parameters:,} parameters, "
                  f"{len(model.labels)} labels)", highlight=False)
