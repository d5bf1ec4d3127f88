"""display_name: any file name shown as one printable line."""

from __future__ import annotations

import os

import pytest

from asttag.names import display_name


@pytest.mark.parametrize("name", ["rec.wav", "dir/Dösendröhnung 🎵.flac", r"C:\audio\a b.wav",
                                  "\u00a0nbsp.wav"])
def test_printable_names_are_unchanged(name):
    assert display_name(name) == name


@pytest.mark.parametrize(("name", "shown"), [
    ("a\nb.wav", "a\\nb.wav"),
    ("tab\there\r.wav", "tab\\there\\r.wav"),
    ("\x1b[31mred.wav", "\\x1b[31mred.wav"),
    (os.fsdecode(b"bad\xff\xfe.wav"), "bad\\xff\\xfe.wav"),
    (b"bytes\xff.wav", "bytes\\xff.wav"),
    ("line\u2028sep\u202eevil", "line\\u2028sep\\u202eevil"),
])
def test_breaking_characters_are_escaped(name, shown):
    assert display_name(name) == shown
    assert display_name(name).isprintable()
    display_name(name).encode("utf-8")  # no lone surrogate left: printable on any UTF-8 stream


def test_path_objects():
    from pathlib import Path

    assert display_name(Path("x") / "y\n.wav") == "x/y\\n.wav"


def test_cli_error_lines_stay_one_line_each(tmp_path):
    """A missing input whose name holds a newline, markup and undecodable bytes: one error line."""
    from typer.testing import CliRunner

    from asttag.cli import app

    name = os.fsdecode(b"miss\ning[/]\xff.wav")
    log = tmp_path / "errors.tsv"
    result = CliRunner().invoke(app, ["tag", str(tmp_path / name), "--errors-log", str(log)])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path}/miss\\ning[/]\\xff.wav: no such file"]
    assert log.read_text(encoding="utf-8") == f"{tmp_path}/miss\\ning[/]\\xff.wav\tno such file\n"
