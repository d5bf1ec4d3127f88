"""`asttag plot`: each kind of input gives its picture, paths on stdout, errors on stderr."""

from __future__ import annotations

import sys

import pytest
from test_plot import predictions, read_png, write_run
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.cli import app
from asttag.evaluation import save_predictions
from test_tagger import bad_inputs, tiny_model, write_wave

pytest.importorskip("matplotlib")


def invoke(*args):
    return CliRunner().invoke(app, ["plot", *map(str, args)])


def test_each_kind_of_input_is_drawn_beside_it(tmp_path):
    model = checkpoint.save(tiny_model(), tmp_path / "tiny.safetensors")
    recording = write_wave(tmp_path / "field.wav", 2.5)
    run = write_run(tmp_path / "run", [0.9, 0.5])
    scores = save_predictions(predictions(5), tmp_path / "eval.npz")
    result = invoke(recording, run, scores, "-m", model, "--device", "cpu", "--width", "600")
    assert result.exit_code == 0, result.output
    written = [tmp_path / "run" / "metrics.png", tmp_path / "eval.png", tmp_path / "field.png"]
    assert result.stdout.splitlines() == [str(p) for p in written]
    assert read_png(tmp_path / "field.png").shape[1] == 600


def test_pictures_go_to_the_output_dir_and_failures_are_named(tmp_path):
    model = checkpoint.save(tiny_model(), tmp_path / "tiny.safetensors")
    good = write_wave(tmp_path / "good.wav", 1.5)
    missing, reason = bad_inputs(tmp_path)["missing"]
    out = tmp_path / "pictures"
    result = invoke(missing, good, "-m", model, "--device", "cpu", "-o", out)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [str(out / "good.png")]
    assert f"error: {missing}: {reason}" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]


def test_two_inputs_drawn_to_one_picture_are_refused(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_wave(tmp_path / folder / "x.wav", 1.0)
    result = invoke(tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "would both be drawn to" in result.stderr


def test_nothing_to_draw_is_a_usage_error(tmp_path):
    result = invoke(tmp_path)
    assert result.exit_code == 2
    assert "no audio files, training runs or predictions files" in result.stderr


def test_a_damaged_predictions_file_is_named(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    result = invoke(bad)
    assert result.exit_code == 1
    assert f"error: {bad}: not a readable predictions file" in result.stderr


def test_tag_draws_each_recording_it_tags_with_plot(tmp_path):
    model = checkpoint.save(tiny_model(), tmp_path / "tiny.safetensors")
    recordings = [write_wave(tmp_path / "one.wav", 2.0), write_wave(tmp_path / "two.wav", 1.2)]
    result = CliRunner().invoke(app, ["tag", *map(str, recordings), "-m", str(model), "--device",
                                      "cpu", "-f", "csv", "-q", "--plot", str(tmp_path / "pics")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("file,start,end,label")  # the data is unchanged
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["one.png", "two.png"]
    assert read_png(tmp_path / "pics" / "one.png").shape[1] == 1600


@pytest.mark.parametrize("command", ["plot", "tag"])
def test_without_matplotlib_nothing_is_tagged_and_the_error_says_what_to_install(
        tmp_path, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    recording = write_wave(tmp_path / "one.wav", 1.0)
    args = [command, str(recording)] + (["--plot", str(tmp_path / "pics")] if command == "tag" else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "error: pictures need matplotlib: pip install 'asttag[plot]'" in result.stderr
