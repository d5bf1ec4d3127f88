"""`asttag plot`: pictures of recordings, training runs and saved evaluation predictions.

What each input is decides the picture: a `.npz` file is `asttag evaluate --save-predictions`
output, a folder holding a training run (or a cross-validation) is drawn as its curves, and
everything else is audio, tagged and drawn. The drawing is `asttag.plot`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import EXIT_FAILED, EXIT_OK, EXIT_USAGE, app, error, fail
from .jobs import job_model, label_keys
from .options import COUNT, DEVICE, SCORE, SECONDS, Device, number


@app.command()
def plot(
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT",
        help="Audio files, directories or glob patterns (tagged and drawn), training run "
             "directories (their curves) or predictions files from `asttag evaluate "
             "--save-predictions` (AP per class)."),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", "-o",
        help="Write the pictures here, named after their inputs (default: beside each input; "
             "a run's as metrics.png inside it)."),
    model: str = typer.Option(
        "default", "--model", "-m", help="The model that tags audio inputs (as for `asttag tag`)."),
    top: int = typer.Option(10, "--top", "-k", parser=COUNT, metavar="K", help="Label rows: the K best clip scores."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", "-t", parser=SCORE, metavar="SCORE", help="Event threshold (default: the one the model recommends, else 0.5)."),
    labels: Optional[list[str]] = typer.Option(
        None, "--labels", "-l", help="Only these labels (names, ids or indices)."),
    hop: Optional[float] = typer.Option(
        None, "--hop", parser=SECONDS, metavar="SECONDS", help="Seconds between window starts (default: the window length)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look inside sub-directories."),
    width: int = typer.Option(
        1600, "--width", parser=number(whole=True, at_least=400), metavar="PIXELS",
        help="Picture width in pixels."),
    device: Device = DEVICE,
) -> None:
    """Draw PNG pictures: a recording's spectrogram, label scores over time and events; a
    training run's loss, accuracy/mAP and learning rate per epoch; per-class AP of predictions.

    Prints the path of each picture written on stdout.
    """
    from .. import plot as pictures
    from ..audio import find_audio
    from ..evaluation import EvaluationError, load_predictions

    try:
        pictures.require_matplotlib()
    except pictures.PlotError as e:
        fail(str(e))
    runs = [Path(p) for p in inputs if pictures.is_training_run(p)]
    evaluations = [Path(p) for p in inputs if p.lower().endswith(".npz")]
    others = [p for p in inputs if Path(p) not in runs and Path(p) not in evaluations]
    recordings = [Path(p) for p in find_audio(others, recursive=recursive)]
    if not runs + evaluations + recordings:
        fail("no audio files, training runs or predictions files in the inputs given", code=EXIT_USAGE)
    try:
        targets = pictures.picture_paths(runs + evaluations + recordings, directory=output_dir)
    except ValueError as e:
        fail(str(e), code=EXIT_USAGE)

    failed = False
    for source in runs + evaluations:
        try:
            if source in runs:
                pictures.draw_run(source, targets[source])
            else:
                pictures.draw_evaluation(load_predictions(source), targets[source])
        except (EvaluationError, pictures.PlotError, OSError) as e:
            failed = True
            message = str(e)  # the core's messages name the file already; OSError's may not
            error(message if message.startswith(f"{source}: ") else f"{source}: {message}")
            continue
        print(targets[source], flush=True)
    if recordings:
        failed |= _draw_recordings(targets, recordings, model=model, top=top, threshold=threshold,
                                   labels=labels, hop=hop, width=width, device=device)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _draw_recordings(targets: dict[Path, Path], recordings: list[Path], *, model: str, top: int,
                     threshold: Optional[float], labels: Optional[list[str]],
                     hop: Optional[float], width: int, device: str) -> bool:
    """Tag and draw each recording; True when some failed."""
    from .. import plot as pictures
    from ..audio import AudioError
    from ..tagger import TagFailure, Tagger

    # job_model steadies the heap: a 3-hour recording streams through twice (tags, spectrogram).
    net, target = job_model(model, device=device)
    try:
        tagger = Tagger(net, device=target, hop=hop, threshold=threshold,
                        labels=label_keys(labels, net.labels) if labels else None)
    except ValueError as e:
        fail(str(e), code=EXIT_USAGE)
    failed = False
    for source, outcome in zip(recordings, tagger.tag_many(recordings)):
        try:
            if isinstance(outcome, TagFailure):
                raise AudioError(outcome.path, outcome.reason)
            pictures.draw_recording(tagger, outcome, targets[source], top=top, width=width)
        except (AudioError, OSError) as e:
            failed = True
            error(f"{source}: {getattr(e, 'reason', e)}")
            continue
        print(targets[source], flush=True)
    return failed
