"""Output formats, per-file outputs and the resume journal, on hand-made results."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from asttag.journal import Journal, input_key, run_key
from asttag.tagger import Event, Tag, TagResult
from asttag.writers import WRITERS, StreamOutput, columns, make_writer, output_path, write_file


def result(path: str = "rec.wav", *, duration: float = 20.48) -> TagResult:
    """Two windows; a label with a comma; one event."""
    room = ("Inside, small room", "/m/room", 1)
    speech = ("Speech", "/m/speech", 0)
    tags = [Tag(0.0, duration, *speech, 0.9123456), Tag(0.0, duration, *room, 0.25)]
    segments = [Tag(0.0, 10.24, *speech, 0.9123456), Tag(10.24, duration, *room, 0.25)]
    events = [Event(0.0, 10.24, *speech, 0.9123456, 0.9), Event(10.24, duration, *room, 0.8, 0.7)]
    scores = np.array([[0.91, 0.1], [0.2, 0.25]], dtype=np.float32)
    return TagResult(path, duration, 16000, np.array([0.0, 10.24]), np.array([10.24, duration]),
                     scores, scores.max(axis=0), tags, segments, events)


def test_csv_quotes_commas_and_parses_back():
    text = make_writer("csv").render([result("a.wav"), result("b, c.wav", duration=5.0)])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["file", "start", "end", "label", "label_id", "score"]
    assert [(r["file"], r["label"], r["score"]) for r in rows] == [
        ("a.wav", "Speech", "0.912346"), ("a.wav", "Inside, small room", "0.250000"),
        ("b, c.wav", "Speech", "0.912346"), ("b, c.wav", "Inside, small room", "0.250000"),
    ]
    assert rows[2]["end"] == "5.000"


def test_tsv_segments_and_events_columns():
    rows = list(csv.DictReader(io.StringIO(make_writer("tsv", mode="segments").render([result()])),
                               delimiter="\t"))
    assert [(r["start"], r["end"], r["label"]) for r in rows] == [
        ("0.000", "10.240", "Speech"), ("10.240", "20.480", "Inside, small room")]
    events = make_writer("csv", mode="events").render([result()])
    assert events.splitlines()[0] == ",".join(columns("events")) == "file,start,end,label,label_id,peak,mean"
    assert events.splitlines()[2] == 'rec.wav,10.240,20.480,"Inside, small room",/m/room,0.800000,0.700000'


@pytest.mark.parametrize("count", [0, 1, 2])
def test_json_is_one_valid_document_and_jsonl_one_object_a_line(count):
    results = [result(f"{i}.wav") for i in range(count)]
    doc = json.loads(make_writer("json").render(results))
    assert [d["file"] for d in doc] == [f"{i}.wav" for i in range(count)]
    lines = make_writer("jsonl", mode="events").render(results).splitlines()
    assert [json.loads(line)["file"] for line in lines] == [f"{i}.wav" for i in range(count)]
    if count:
        assert doc[0]["tags"][0] == {"start": 0.0, "end": 20.48, "label": "Speech",
                                     "label_id": "/m/speech", "score": 0.912346}
        assert json.loads(lines[0])["events"][1] == {"start": 10.24, "end": 20.48,
                                                     "label": "Inside, small room",
                                                     "label_id": "/m/room", "peak": 0.8, "mean": 0.7}


def test_audacity_label_track_and_raven_selection_table():
    track = make_writer("audacity", mode="events").render([result()])
    assert track == "0.000000\t10.240000\tSpeech (0.912)\n10.240000\t20.480000\tInside, small room (0.800)\n"
    lines = make_writer("raven", mode="segments").render([result()]).splitlines()
    header = lines[0].split("\t")
    assert header[:5] == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)"]
    second = dict(zip(header, lines[2].split("\t")))
    assert second["Selection"] == "2" and second["Begin Time (s)"] == "10.240"
    assert second["High Freq (Hz)"] == "8000.0" and second["Label"] == "Inside, small room"
    assert all(WRITERS[name].per_recording for name in ("audacity", "raven"))


def test_table_is_plain_text_without_colour():
    text = make_writer("table", mode="events", width=100).render([result()])
    assert "Inside, small room" in text and "0.912346" in text and "\x1b[" not in text
    assert "rec.wav (20.48 s)" in text


def test_stream_output_writes_header_separators_and_footer_once():
    stream = io.StringIO()
    out = StreamOutput(stream, make_writer("json"))
    out.write(result("a.wav"))
    out.write(result("b.wav"))
    out.close()
    assert [d["file"] for d in json.loads(stream.getvalue())] == ["a.wav", "b.wav"]


def test_unknown_format_or_mode():
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        make_writer("xml")
    with pytest.raises(ValueError, match="unknown mode"):
        make_writer("csv", mode="windows")


def test_per_file_outputs_mirror_the_input_folders(tmp_path):
    writer = make_writer("raven")
    source = tmp_path / "in" / "site1" / "rec.flac"
    target = output_path(source, root=tmp_path / "in", directory=tmp_path / "out", writer=writer)
    assert target == tmp_path / "out" / "site1" / "rec.selections.txt"
    write_file(target, writer, [result(str(source))])
    assert target.read_text().startswith("Selection\t")
    assert [p.name for p in target.parent.iterdir()] == ["rec.selections.txt"]  # no temp left


def test_journal_resumes_skips_cut_lines_and_assembles_in_input_order(tmp_path):
    out = tmp_path / "out.csv"
    writer = make_writer("csv")
    run = run_key({"hop": 1})
    first = Journal(out, run=run)
    assert first.start().done == 0
    first.record("k1", "b.wav", writer.chunk(result("b.wav")))
    first.release()  # as a kill does
    with open(first.path, "ab") as f:  # a kill in the middle of writing an entry
        f.write(b'{"key": "k2", "chunk": "half')
    again = Journal(out, run=run)
    assert again.start().done == 1 and again.done("k1") and not again.done("k2")
    again.record("k0", "a.wav", writer.chunk(result("a.wav")))
    assert again.assemble(["k0", "missing", "k1"], writer) == 2
    again.remove()
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["file"] for r in rows] == ["a.wav", "a.wav", "b.wav", "b.wav"]
    assert list(tmp_path.iterdir()) == [out]


def test_journal_with_other_options_is_not_resumed_and_ranks_are_merged(tmp_path):
    out = tmp_path / "out.jsonl"
    writer = make_writer("jsonl")
    old = Journal(out, run=run_key({"hop": 1}))
    old.start()
    old.record("k0", "a.wav", "stale\n")
    old.release()
    ranks = [Journal(out, run=run_key({"hop": 2}), rank=r, world=2) for r in (0, 1)]
    statuses = [j.start() for j in ranks]
    assert statuses[0].done == 0 and statuses[0].stale == [old.path]
    ranks[1].record("k1", "b.wav", writer.chunk(result("b.wav")))
    ranks[0].record("k0", "a.wav", writer.chunk(result("a.wav")))
    ranks[1].close()
    assert ranks[0].assemble(["k0", "k1"], writer) == 2
    assert [json.loads(line)["file"] for line in out.read_text().splitlines()] == ["a.wav", "b.wav"]


def test_input_key_changes_with_the_file(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"1")
    before = input_key(path)
    assert input_key(str(path)) == before
    path.write_bytes(b"12")
    assert input_key(path) != before
    assert input_key(tmp_path / "missing.wav") != input_key(tmp_path / "other.wav")


def test_the_suffix_each_format_writes_reads_back_as_that_format():
    from asttag.writers import WRITERS, format_for

    for name, cls in WRITERS.items():
        assert format_for(f"out/x{cls.suffix}") == name
    assert format_for("x.selections.txt") == "raven" and format_for("X.SELECTIONS.TXT") == "raven"
    assert format_for("x.txt") == "audacity" and format_for("x.wav") is None
