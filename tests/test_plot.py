"""Pictures: each drawn from tiny inputs, checked for size and content; the reductions that keep
a long recording's picture bounded checked against the full-resolution values."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from asttag import plot
from asttag.audio import load
from asttag.evaluation import Predictions
from asttag.features import FeatureConfig, fbank
from asttag.labels import LabelSet
from asttag.tagger import Event, TagResult
from test_tagger import tagger, write_wave

pytest.importorskip("matplotlib")


def read_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def assert_drawn(path: Path, *, width: int, colour: float) -> None:
    """The PNG is `width` pixels wide and at least a `colour` share of it is coloured: axes,
    ticks and text are grey, so data was drawn."""
    image = read_png(path)[..., :3]
    assert image.shape[1] == width
    coloured = (image.max(axis=-1) - image.min(axis=-1) > 0.25).mean()
    assert coloured > colour, f"only {coloured:.2%} of the picture is coloured"


def test_a_recording_picture_has_its_width_and_holds_a_drawing(tmp_path):
    t = tagger(threshold=0.2)
    result = t.tag(write_wave(tmp_path / "a.wav", 3.5))
    out = plot.draw_recording(t, result, tmp_path / "pictures" / "a.png", width=800)
    assert out == tmp_path / "pictures" / "a.png"
    assert_drawn(out, width=800, colour=0.3)
    assert [p.name for p in out.parent.iterdir()] == ["a.png"]  # no temporary file left


def test_the_spectrogram_streams_into_column_means_of_the_whole_files_frames(tmp_path):
    path = write_wave(tmp_path / "long.wav", 5.3)
    features = FeatureConfig(num_mel_bins=32, target_length=100)
    frames = fbank(load(path, sample_rate=16000), features)
    # Blocks of 0.7 s cut frames at uneven places: the frame grid must run on across them.
    columns = plot.spectrogram_columns(path, features, duration=5.3, columns=37, block_seconds=0.7)
    assert columns.shape == (32, 37)
    which = np.arange(len(frames)) * 37 // len(frames)
    expected = np.stack([frames[which == c].mean(axis=0) for c in range(37)], axis=1)
    np.testing.assert_allclose(columns, expected, rtol=1e-5, atol=1e-5)


def test_a_short_file_keeps_one_column_per_frame(tmp_path):
    path = write_wave(tmp_path / "short.wav", 0.5)
    features = FeatureConfig(num_mel_bins=32, target_length=100)
    frames = fbank(load(path, sample_rate=16000), features)
    columns = plot.spectrogram_columns(path, features, duration=0.5, columns=1600)
    np.testing.assert_allclose(columns, frames.T, rtol=1e-5, atol=1e-5)


def test_score_columns_take_the_highest_window_over_each_column():
    scores = np.array([[0.1], [0.9], [0.5]])
    # Windows of 2 s every 1 s over 3.5 s: the middle column pairs are each covered by two windows.
    starts, ends = np.array([0.0, 1.0, 2.0]), np.array([2.0, 3.0, 3.5])
    heat = plot.score_columns(scores, starts, ends, duration=3.5, columns=7)
    np.testing.assert_array_equal(heat[0], [0.1, 0.1, 0.9, 0.9, 0.9, 0.9, 0.5])
    # Fewer columns than windows: every window still counts.
    np.testing.assert_array_equal(plot.score_columns(scores, starts, ends, duration=3.5, columns=1),
                                  [[0.9]])


def test_events_cover_their_columns_and_a_short_one_still_shows():
    def event(start, end, index):
        return Event(start, end, "x", "x", index, 0.9, 0.8)

    events = [event(0.0, 2.0, 1), event(2.01, 2.02, 1), event(5.0, 10.0, 2)]
    result = TagResult("x.wav", 10.0, 16000, np.zeros(1), np.ones(1), np.zeros((1, 4)),
                       np.zeros(4), [], [], events)
    covered = plot.event_columns(result, [2, 1, 0], columns=10)
    np.testing.assert_array_equal(np.nan_to_num(covered), [[0] * 5 + [1] * 5,
                                                            [1, 1, 1] + [0] * 7,
                                                            [0] * 10])


def test_clock_ticks_fall_on_easy_steps():
    assert plot._clock_step(600) == 120
    assert plot._clock_step(3 * 3600) == 1800
    assert plot._clock(5400, 3 * 3600) == "1:30:00" and plot._clock(90, 600) == "1:30"


def test_labels_with_events_get_a_row_even_past_the_top(tmp_path):
    t = tagger(threshold=0.2)
    result = t.tag(write_wave(tmp_path / "a.wav", 3.5))
    assert {e.index for e in result.events} == {0, 1, 2, 3}
    rows = plot._label_rows(t, result, top=1)
    assert rows[0] == int(np.argmax(result.clip_scores)) and sorted(rows) == [0, 1, 2, 3]
    assert plot._label_rows(tagger(labels=["Dog"]), result, top=3) == [3]


def write_run(folder: Path, losses: list[float], *, lr: float = 1e-4) -> Path:
    folder.mkdir(parents=True)
    records = [{"epoch": i + 1, "lr": lr / 2**i, "train_loss": loss, "valid_loss": loss + 0.1,
                "accuracy": 1 - loss / 2, "mAP": None if i == 0 else 0.5 + i / 10}
               for i, loss in enumerate(losses)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_a_training_run_picture(tmp_path):
    run = write_run(tmp_path / "run", [0.9, 0.6, 0.5])
    assert_drawn(plot.draw_run(run, tmp_path / "run.png", width=900), width=900, colour=0.005)


def test_cross_validation_folds_and_their_mean(tmp_path):
    root = tmp_path / "cv"
    write_run(root / "fold_1", [0.9, 0.5, 0.3])
    write_run(root / "fold_2", [0.7, 0.5])  # interrupted: its third epoch is missing
    (root / "cross_validation.json").write_text(json.dumps({"folds": [1, 2, 3]}))  # fold 3 not begun
    runs = plot.read_run_metrics(root)
    assert [r.name for r in runs] == ["fold_1", "fold_2"]
    epochs, mean = plot._mean_over_runs(runs, "train_loss")
    np.testing.assert_allclose(epochs, [1, 2])
    np.testing.assert_allclose(mean, [0.8, 0.5])
    epochs, mean = plot._mean_over_runs(runs, "mAP")  # epoch 1 has no mAP
    np.testing.assert_allclose(epochs, [2])
    assert_drawn(plot.draw_run(root, tmp_path / "cv.png"), width=1200, colour=0.005)


def test_a_folder_without_epochs_is_refused(tmp_path):
    with pytest.raises(plot.PlotError, match="no training epochs"):
        plot.draw_run(tmp_path, tmp_path / "x.png")


def predictions(classes: int, clips: int = 40, seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    targets = (rng.random((clips, classes)) < 0.3).astype(np.float32)
    targets[:, 0] = 0  # no positive: left out
    scores = np.clip(targets * rng.random(classes) + 0.5 * rng.random((clips, classes)), 0, 1)
    names = [f"sound {i}" for i in range(classes)]
    return Predictions(scores.astype(np.float32), targets, LabelSet.from_names(names),
                       tuple(f"{i}.wav" for i in range(clips)), {"source": "test"})


def test_an_evaluation_picture(tmp_path):
    assert_drawn(plot.draw_evaluation(predictions(6), tmp_path / "eval.png", width=700), width=700,
                 colour=0.1)


def test_many_classes_show_the_best_and_the_worst(tmp_path):
    p = predictions(30)
    out = plot.draw_evaluation(p, tmp_path / "eval.png", limit=10)
    # 29 scored classes drawn as 10 bars: the picture's height says how many bars it has.
    assert read_png(out).shape[0] == 120 + 16 * 10


def test_without_matplotlib_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plot.PlotError, match=r"pip install 'asttag\[plot\]'"):
        plot.draw_evaluation(predictions(4), tmp_path / "eval.png")
    assert not (tmp_path / "eval.png").exists()
