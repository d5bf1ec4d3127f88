"""`asttag average`: weight averaging of compatible checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, check_output_file, console, fail
from .options import COUNT


@app.command()
def average(
    sources: list[str] = typer.Argument(
        ..., help="Checkpoint files, glob patterns (quoted) or training run directories.",
        show_default=False),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Where to write the averaged checkpoint."),
    from_epoch: Optional[int] = typer.Option(
        None, "--from-epoch", parser=COUNT, metavar="EPOCH", help="First epoch of the averaging window (inclusive)."),
    to_epoch: Optional[int] = typer.Option(
        None, "--to-epoch", parser=COUNT, metavar="EPOCH", help="Last epoch of the averaging window (inclusive)."),
    top: Optional[int] = typer.Option(
        None, "--top", parser=COUNT, metavar="N", help="Average the N checkpoints with the best --metric (after the window)."),
    metric: str = typer.Option(
        "mAP", "--metric",
        help="Stored metric --top ranks by: higher is better, except for names ending in loss."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT."),
) -> None:
    """Average the weights of compatible checkpoints (the paper's weight averaging).

    Prints `SHA256  OUTPUT` on stdout (the `sha256sum` layout); the rest goes to stderr.
    """
    from ..averaging import AveragingError, expand_sources, select_top, select_window, write_average
    from ..checkpoint import CheckpointError

    check_output_file(output, force=force)
    try:
        chosen = expand_sources(sources)
        if from_epoch is not None or to_epoch is not None:
            chosen = select_window(chosen, first=from_epoch, last=to_epoch)
        if top is not None:
            chosen = select_top(chosen, top, metric=metric)
        console.print(f"averaging {len(chosen)} checkpoint(s):", highlight=False, soft_wrap=True)
        for c in chosen:
            console.print(f"  {c.path}" + (f" (epoch {c.epoch})" if c.epoch is not None else ""),
                          highlight=False, soft_wrap=True)
        result = write_average(chosen, output, force=force)
    except (AveragingError, CheckpointError, OSError) as e:
        fail(e)
    print(f"{result.sha256}  {result.path}")
