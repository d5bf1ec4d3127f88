"""display_name: any file name shown as one printable line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
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


# --------------------------------------------------------------------------- names in outputs

BAD_NAME = os.fsdecode(b"dir/bad\xff\nname [bold].wav")  # as os.listdir gives it


def _result(path: str):
    from test_writers import result

    return result(path)


def test_delimited_outputs_hold_the_names_bytes(tmp_path):
    import csv
    import io

    from asttag.writers import make_writer

    for fmt, delimiter in (("csv", ","), ("tsv", "\t")):
        writer = make_writer(fmt)
        out = tmp_path / f"out.{fmt}"
        writer.write(out, [writer.chunk(_result(BAD_NAME)), writer.chunk(_result("b.wav"))])
        text = out.read_bytes().decode("utf-8", "surrogateescape")
        rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))
        assert [os.fsencode(r["file"]) for r in rows] == [os.fsencode(BAD_NAME)] * 2 + [b"b.wav"] * 2


def test_json_escapes_undecodable_bytes_so_python_reads_the_name_back(tmp_path):
    import json

    from asttag.writers import make_writer

    for fmt in ("json", "jsonl"):
        writer = make_writer(fmt)
        out = tmp_path / f"out.{fmt}"
        writer.write(out, [writer.chunk(_result(BAD_NAME))])
        text = out.read_text(encoding="utf-8")  # valid UTF-8 throughout
        assert "\\udcff" in text
        doc = json.loads(text) if fmt == "json" else [json.loads(text)]
        assert os.fsencode(doc[0]["file"]) == b"dir/bad\xff\nname [bold].wav"


def test_people_formats_show_names_escaped_on_one_line():
    from asttag.writers import make_writer

    raven = make_writer("raven").chunk(_result(BAD_NAME))
    assert raven.count("\n") == 2 and "\tbad\\xff\\nname [bold].wav\t" in raven
    table = make_writer("table").chunk(_result(BAD_NAME))
    assert "dir/bad\\xff\\nname [bold].wav (20.48 s)" in table  # not Rich markup either


def test_no_format_prints_nan_as_a_score():
    import numpy as np

    from asttag.tagger import Tag
    from asttag.writers import WRITERS, make_writer

    broken = _result("a.wav")
    broken.tags[0] = Tag(0.0, 20.48, "Speech", "/m/speech", 0, float(np.nan))
    for name in WRITERS:
        with pytest.raises(ValueError, match="a.wav: the score of 'Speech' is nan, not a score"):
            make_writer(name).chunk(broken)


def test_a_model_that_computes_nan_fails_that_file_by_name(tmp_path):
    from asttag.tagger import TagFailure
    from test_tagger import tagger as make_tagger
    from test_tagger import write_wave

    bad, good = write_wave(tmp_path / "bad.wav", 2.5), write_wave(tmp_path / "good.wav", 1.0)
    tagger = make_tagger(batch_size=1)
    predict, calls = tagger.predict, []

    def nan_in_the_second_window(windows):
        calls.append(len(windows))
        p = predict(windows)
        return np.full_like(p, np.nan) if len(calls) == 2 else p

    tagger.predict = nan_in_the_second_window
    outcomes = {Path(o.path).name: o for o in tagger.tag_many([str(bad), str(good)])}
    assert outcomes["bad.wav"] == TagFailure(
        str(bad), "the model's scores are not numbers (NaN) in 1 of 3 window(s), the first at "
        "1.000 s")
    assert not isinstance(outcomes["good.wav"], TagFailure)
