"""`asttag probe`: a new linear head on a frozen model's embeddings (asttag.probe)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import EXIT_USAGE, app, console, fail, user_errors
from .options import DEVICE, DataOptions, Device, Layout, Workers, parse_data_options


@app.command()
def probe(
    data: Annotated[Path, typer.Argument(help="The labelled data set: a folder or a manifest file.",
                                         show_default=False)],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="The probe model to write (.safetensors).", show_default=False)],
    model: Annotated[str, typer.Option(
        "--model", "-m", help="The frozen model: a name, checkpoint or transformers directory.")] = "default",
    layout: Layout = "auto",
    data_option: DataOptions = None,
    c: Annotated[float, typer.Option(
        "--c", help="Inverse L2 regularisation strength (scikit-learn's C), above 0.")] = 1.0,
    hop: Annotated[Optional[float], typer.Option(
        "--hop", help="Seconds between window starts (default: the window length).")] = None,
    device: Device = DEVICE,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", "-b", min=1, help="Windows per forward pass.")] = None,
    workers: Workers = 1,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT.")] = False,
) -> None:
    """Train only a new classifier head on a frozen model's embeddings: seconds on a CPU.

    The summary (clip accuracy or mAP on the train and valid splits, timings) goes to stdout
    as JSON; the probe is a model like any other (`asttag tag -m OUTPUT`).
    """
    if output.exists() and not force:
        fail(f"{output} exists; pass --force to overwrite it", code=EXIT_USAGE)
    if not data.exists():
        fail(f"{data}: no such file or directory", code=EXIT_USAGE)
    from .. import checkpoint
    from ..datasets import load_dataset
    from ..hub import load_model
    from ..probe import train_probe

    try:
        splits = load_dataset(layout, data, **parse_data_options(data_option))
        net = load_model(model, device="cpu")
        result = train_probe(net, splits, c=c, hop=hop, device=device, batch_size=batch_size,
                             workers=workers)
    except TypeError as e:  # an option of the wrong kind, or a model that is not one AST
        fail(f"{data}: {e}", code=EXIT_USAGE)
    except user_errors() as e:
        fail(str(e))
    summary = {"model": model, "data": str(data), **result.summary()}
    checkpoint.save(result.model, output, extra={"probe": summary})
    valid = result.valid_metrics or result.train_metrics
    figure = "accuracy" if not result.model.labels.multi_label else "mAP"
    console.print(f"wrote {output}: {result.train_windows} windows of {len(splits.train)} clips, "
                  f"{'valid' if result.valid_metrics else 'train'} {figure} "
                  f"{getattr(valid, figure):.3f}; embedding {result.embed_seconds:.1f} s, "
                  f"fit {result.fit_seconds:.2f} s", highlight=False, soft_wrap=True)
    print(json.dumps(summary, indent=2))
