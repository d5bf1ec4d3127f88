"""`asttag embed`: per-window and per-file embeddings of recordings (asttag.embedding)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..choices import EMBEDDING_FORMATS, EmbeddingFormat, Pad, TagPrecision
from .app import EXIT_FAILED, EXIT_OK, app, console
from .jobs import JobProgress, job_model, job_usage, note, read_inputs, usage
from .options import (
    COUNT,
    DEVICE,
    SECONDS,
    Device,
    ErrorsLog,
    JobQuiet,
    JobWorkers,
    Threads,
)


@app.command()
def embed(
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT",
        help="Audio files, directories, glob patterns, or - to read paths from stdin."),
    model: str = typer.Option(
        "default", "--model", "-m", help="A model name, checkpoint or transformers directory."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o",
        help="One output for all inputs, resumable; its suffix names the format "
             "(.safetensors, .npy with index CSVs, .parquet)."),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", help="One output per input, mirroring the input folders."),
    fmt: Optional[EmbeddingFormat] = typer.Option(
        None, "--format", "-f", help="With --output-dir: the format (default safetensors)."),
    skip_existing: bool = typer.Option(
        False, "--skip-existing", help="With --output-dir: leave inputs whose output exists."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look inside sub-directories."),
    patches: bool = typer.Option(
        False, "--patches", help="Also the mean of the patch tokens, per window and per file."),
    window: Optional[float] = typer.Option(
        None, "--window", parser=SECONDS, metavar="SECONDS", help="Window length in seconds (default: the model's input length)."),
    hop: Optional[float] = typer.Option(
        None, "--hop", parser=SECONDS, metavar="SECONDS", help="Seconds between window starts (default: the window length)."),
    pad: Pad = typer.Option(
        "zero", "--pad", help="Fill short clips and the last window with zeros or by repeating."),
    device: Device = DEVICE,
    precision: TagPrecision = typer.Option(
        "fp32", "--precision", help="fp32, bf16, fp16 (CUDA) or int8 (CPU)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", "-b", parser=COUNT, metavar="N",
        help="Windows per forward pass (default as for tag)."),
    threads: Threads = None,
    workers: JobWorkers = 1,
    quiet: JobQuiet = False,
    errors_log: ErrorsLog = None,
) -> None:
    """Embed audio files window by window: the vector the model's head sees, and its mean per file."""
    from ..runs import JobError, Shard, check_destinations

    if (output is None) == (output_dir is None):
        usage("give -o/--output FILE or --output-dir DIR")
    if fmt is not None and output is not None:
        usage("-f/--format goes with --output-dir; with -o the suffix names the format")
    if skip_existing and output_dir is None:
        usage("--skip-existing needs --output-dir (a run with -o FILE resumes by itself)")
    try:
        shard = Shard.from_environment()
        check_destinations(output=output, output_dir=output_dir, errors_log=errors_log,
                           shard=shard)
    except JobError as e:
        job_usage(e)
    paths = read_inputs(inputs, recursive=recursive)
    if not paths:
        usage("no audio files found in the inputs given")

    from ..embedding import Embedder, embedding_format, make_embedding_writer
    from ..runs import tag_files

    net, target = job_model(model, device=device, threads=threads, shard=shard)
    try:
        embedder = Embedder(net, patches=patches, device=target, precision=precision,
                            batch_size=batch_size, window=window, hop=hop, pad=pad,
                            workers=workers)
        name = embedding_format(output) if output else (fmt or EMBEDDING_FORMATS[0])
        writer = make_embedding_writer(name, dim=embedder.embed_dim, patches=patches)
    except (TypeError, ValueError) as e:
        usage(f"{model}: {e}" if isinstance(e, TypeError) else str(e))
    progress = JobProgress(enabled=not quiet and shard.rank == 0 and console.is_terminal,
                         doing="embedding", done="embedded")
    try:
        result = tag_files(embedder, paths, writer=writer, output=output, output_dir=output_dir,
                           skip_existing=skip_existing, model=model, errors_log=errors_log,
                           shard=shard, observer=progress)
    except JobError as e:
        job_usage(e)
    finally:
        progress.close()
    if not quiet:
        prefix = f"rank {shard.rank}: " if shard.world > 1 else ""
        note(prefix + progress.summary())
    raise typer.Exit(EXIT_FAILED if result.failures else EXIT_OK)
