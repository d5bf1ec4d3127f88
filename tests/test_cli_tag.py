"""`asttag tag` end to end: in-process (CliRunner) and as real processes."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.cli import app
from test_tagger import bad_inputs, tiny_model, write_wave

FORMATS = ("csv", "tsv", "json", "jsonl")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return checkpoint.save(tiny_model(), tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture
def recordings(tmp_path) -> list[Path]:
    folder = tmp_path / "audio"
    folder.mkdir()
    return [write_wave(folder / f"rec{i}.wav", seconds, seed=i)
            for i, seconds in enumerate((3.5, 0.4, 2.0))]


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()  # --threads sets torch's process-wide value
    yield
    torch.set_num_threads(threads)


def invoke(model: Path, *args, stdin: str | None = None):
    # The default decoding thread, as a user runs it.
    runner = CliRunner()
    return runner.invoke(app, ["tag", "-m", str(model), "--threads", "1",
                               *map(str, args)], input=stdin)


def parse(text: str, fmt: str) -> list[dict]:
    """Rows of any machine format, as dicts with the file name."""
    if fmt in ("csv", "tsv"):
        return list(csv.DictReader(io.StringIO(text), delimiter="," if fmt == "csv" else "\t"))
    docs = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
    return [{"file": d["file"], **row} for d in docs for row in d["tags"]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_stdout_holds_only_data_that_parses_back(model_path, recordings, fmt):
    result = invoke(model_path, *recordings, "-f", fmt, "--top", "2")
    assert result.exit_code == 0, result.stderr
    rows = parse(result.stdout, fmt)
    assert [Path(r["file"]).name for r in rows] == ["rec0.wav"] * 2 + ["rec1.wav"] * 2 + ["rec2.wav"] * 2
    assert {r["label"] for r in rows} <= {"Speech", "Inside, small room", "Music", "Dog"}
    assert "tagged 3 file(s)" in result.stderr and "tagged" not in result.stdout


# `python -m asttag`, writing at exit which of the modules `asttag tag` must not need it loaded:
# what tagging imports is start-up every run pays (scikit-learn alone, through the training
# engine's metrics, was 1.7 s of it).
_NOT_NEEDED = ("asttag.training", "asttag.metrics", "sklearn", "scipy")
_RECORDING_IMPORTS = (
    "import atexit, os, runpy, sys\n"
    "def loaded():\n"
    "    with open(os.environ['ASTTAG_TEST_LOADED'], 'w') as out:\n"
    f"        out.write(' '.join(m for m in {_NOT_NEEDED!r} if m in sys.modules))\n"
    "atexit.register(loaded)\n"
    "sys.argv[0] = 'asttag'\n"
    "runpy.run_module('asttag', run_name='__main__')\n"
)


def test_real_process_pipes_csv_by_default_and_says_nothing_when_quiet(model_path, recordings,
                                                                       tmp_path):
    # One process (a start costs more than the job): in a pipe, stdout is plain CSV rows and a
    # quiet run leaves stderr empty (no stray warnings of imports, no progress); the run loads
    # neither the training engine nor scikit-learn. What a run that is not quiet says on stderr
    # is checked in-process above, and in a real process by the Ctrl-C test below.
    loaded = tmp_path / "loaded"
    proc = subprocess.run(
        [sys.executable, "-c", _RECORDING_IMPORTS, "tag", "-m", str(model_path), "--threads", "1",
         *map(str, recordings), "--segments", "-q"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "ASTTAG_TEST_LOADED": str(loaded)})
    assert proc.returncode == 0, proc.stderr
    assert loaded.read_text() == ""
    rows = parse(proc.stdout, "csv")
    assert len(rows) == (4 + 1 + 2) * 4  # windows x labels (the top 5 of 4 labels)
    starts = [float(r["start"]) for r in rows if r["file"].endswith("rec0.wav")]
    assert starts == sorted(starts) and starts[-1] == 3.0
    assert proc.stderr == "" and "\x1b" not in proc.stdout


def test_every_kind_of_bad_input_is_reported_and_the_rest_is_complete(model_path, recordings,
                                                                      tmp_path):
    bad = bad_inputs(tmp_path)
    good = invoke(model_path, *recordings)
    log = tmp_path / "errors.tsv"
    mixed = [recordings[0], *(path for path, _ in bad.values()), *recordings[1:]]
    proc = invoke(model_path, *mixed, "--errors-log", log)
    assert proc.exit_code == 1
    assert proc.stdout == good.stdout  # the good files' results, complete and in order
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == len(bad)
    for (path, reason), line in zip(bad.values(), lines):
        assert str(path) in line and reason in line
    logged = [line.split("\t") for line in log.read_text().splitlines()]
    assert [(Path(p), reason_text) for p, reason_text in logged] == [
        (path, next(line for line in lines if str(path) in line).split(f"{path}: ")[1])
        for path, _ in bad.values()
    ]
    assert "3 failed" not in proc.stderr and f"{len(bad)} failed" in proc.stderr


def held_back(fifo: Path) -> Path:
    """A named pipe given as the last input: the run blocks opening it until `release`, so a
    signal sent after the first files always finds it running, however fast tagging gets."""
    os.mkfifo(fifo)
    return fifo


def release(fifo: Path) -> None:
    """Let a reader still blocked on `fifo` (a killed run's decoding worker) go on and exit."""
    with contextlib.suppress(OSError):  # ENXIO: nobody is reading
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def signal_once_journalled(proc: subprocess.Popen, journal: Path, signum: int) -> None:
    """Send `signum` to a run as soon as its journal records two finished files."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 3:  # header + 2 files
            proc.send_signal(signum)
            return
        time.sleep(0.002)


def test_sigkill_half_way_then_resume_equals_an_uninterrupted_run(model_path, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        write_wave(folder / f"f{i:02d}.wav", 4, seed=i)
    last = tmp_path / "last.wav"
    full = tmp_path / "full.csv"
    assert invoke(model_path, folder, write_wave(last, 4, seed=12), "-o", full, "-b",
                  "4").exit_code == 0
    last.unlink()

    out = tmp_path / "out.csv"
    journal = tmp_path / "out.csv.asttag-journal"
    command = [sys.executable, "-m", "asttag", "tag", "-m", str(model_path), "--threads", "1",
               str(folder), str(held_back(last)), "-o", str(out), "-b", "4"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    signal_once_journalled(proc, journal, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    release(last)
    assert not out.exists()
    done = journal.read_bytes().count(b"\n") - 1
    assert 2 <= done <= 12

    # The resume needs no process of its own (one costs more than its work): what the killed
    # process left is what any run finds. The held-back input is a recording by now.
    last.unlink()
    write_wave(last, 4, seed=12)
    resumed = invoke(model_path, folder, last, "-o", out, "-b", "4")
    assert resumed.exit_code == 0, resumed.stderr
    assert f"{done} of 13 file(s) already done" in resumed.stderr
    assert f"tagged {13 - done} file(s)" in resumed.stderr  # nothing tagged twice
    assert out.read_bytes() == full.read_bytes()
    assert not journal.exists()


def test_output_dir_mirrors_inputs_and_skip_existing(model_path, recordings, tmp_path):
    nested = tmp_path / "audio" / "site" / "deep.wav"
    nested.parent.mkdir()
    write_wave(nested, 1.0)
    out = tmp_path / "out"
    first = invoke(model_path, tmp_path / "audio", "-r", "--output-dir", out, "-f", "json")
    assert first.exit_code == 0, first.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert written == ["rec0.json", "rec1.json", "rec2.json", "site/deep.json"]
    assert json.loads((out / "site" / "deep.json").read_text())[0]["file"] == str(nested)
    (out / "rec1.json").unlink()
    again = invoke(model_path, tmp_path / "audio", "-r", "--output-dir", out, "-f", "json",
                   "--skip-existing")
    assert "skipping 3 input(s)" in again.stderr and "tagged 1 file(s)" in again.stderr
    assert (out / "rec1.json").exists() and again.stdout == ""


def test_paths_from_stdin_globs_and_label_filter(model_path, recordings):
    piped = invoke(model_path, "-", "--labels", "Inside, small room", "--labels", "Dog,Music",
                   stdin="\n".join(map(str, recordings[:2])) + "\n")
    assert piped.exit_code == 0, piped.stderr
    rows = parse(piped.stdout, "csv")
    assert {r["label"] for r in rows} == {"Inside, small room", "Dog", "Music"}
    assert {Path(r["file"]).name for r in rows} == {"rec0.wav", "rec1.wav"}
    globbed = invoke(model_path, str(recordings[0].parent / "rec[02].wav"), "--events", "-t", "0.0")
    events = parse(globbed.stdout, "csv")
    assert {Path(r["file"]).name for r in events} == {"rec0.wav", "rec2.wav"}
    assert list(events[0]) == ["file", "start", "end", "label", "label_id", "peak", "mean"]


@pytest.mark.parametrize("args,message", [
    (["-o", "x.csv", "--output-dir", "d"], "not both"),
    (["--segments", "--events"], "not both"),
    (["--skip-existing"], "--skip-existing needs --output-dir"),
    (["-f", "audacity"], "with several inputs use --output-dir"),
    (["--hop", "0.123"], "multiple of 10 ms"),
    (["--labels", "Cat"], "unknown label 'Cat'"),
    (["--device", "tpu"], "unknown device"),
])
def test_usage_errors_exit_2(model_path, recordings, args, message):
    result = invoke(model_path, *recordings, *args)
    assert result.exit_code == 2 and message in result.stderr and result.stdout == ""


def test_a_model_that_cannot_be_loaded_fails_loudly(recordings, tmp_path):
    result = invoke(tmp_path / "nope.safetensors", *recordings)
    assert result.exit_code == 1 and "nope.safetensors" in result.stderr


def test_a_hop_longer_than_the_window_is_said_on_stderr(model_path, recordings):
    result = invoke(model_path, recordings[0], "--hop", "1.5")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())  # the log handler wraps lines to the console width
    assert "33.3% of the audio (0.5 s of every hop) is never analysed" in said
    assert "never analysed" not in result.stdout


@pytest.mark.parametrize("env,message", [
    ({"WORLD_SIZE": "0"}, "error: WORLD_SIZE=0: "),
    ({"RANK": "1", "WORLD_SIZE": "1"}, "error: RANK=1: "),  # once skipped the first file silently
    ({"RANK": "x"}, "error: RANK=x: "),
])
def test_torchrun_variables_are_usage_errors(model_path, recordings, env, message):
    result = CliRunner().invoke(app, ["tag", "-m", str(model_path), *map(str, recordings)], env=env)
    assert result.exit_code == 2 and message in result.stderr and result.stdout == ""


@pytest.mark.parametrize("args,message", [
    (["-o", ""], "an empty path names no file (-o/--output)"),
    (["-o", "{tmp}"], "{tmp}: is a directory (-o/--output)"),
    (["--output-dir", "{tmp}/audio/rec0.wav"], "rec0.wav: not a directory (--output-dir)"),
    (["--errors-log", "{tmp}"], "{tmp}: is a directory (--errors-log)"),
])
def test_outputs_are_checked_before_any_work(model_path, recordings, tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    result = invoke(model_path, *recordings, *args)
    assert result.exit_code == 2 and message.format(tmp=tmp_path) in result.stderr
    assert result.stdout == "" and "tagged" not in result.stderr


def test_an_output_named_like_a_format_is_written_in_it(model_path, recordings, tmp_path):
    out = tmp_path / "rec0.selections.txt"
    result = invoke(model_path, recordings[0], "-o", out)
    assert result.exit_code == 0, result.stderr
    assert out.read_text().startswith("Selection\tView\tChannel")  # a Raven table, not CSV


def test_when_nothing_passes_the_best_score_and_the_option_are_said(model_path, recordings,
                                                                     tmp_path):
    from asttag.thresholds import KEY

    model = checkpoint.load(model_path)
    strict = checkpoint.save(model, tmp_path / "strict.safetensors",
                             extra={KEY: {"value": 1.0, "rule": "chosen on 9 held-out clips"}})
    result = invoke(strict, recordings[0], "--events", "-f", "csv")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "no events at or over the threshold 1, chosen on 9 held-out clips; the best score was" in said
    assert "a lower -t/--threshold lowers the bar" in said
    assert result.stdout.splitlines()[1:] == []  # the header only
    tags = invoke(model_path, recordings[0], "-t", "1")
    assert "no tags at or over the threshold 1; the best score was" in " ".join(tags.stderr.split())
    quiet = invoke(strict, recordings[0], "--events", "-q")
    assert "best score" not in quiet.stderr
def test_ctrl_c_says_what_was_kept_and_how_to_go_on(model_path, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(3):
        write_wave(folder / f"f{i:02d}.wav", 2, seed=i)
    out = tmp_path / "out.csv"
    journal = tmp_path / "out.csv.asttag-journal"
    fifo = held_back(tmp_path / "last.wav")
    # Decoding in the main process: the interrupt lands in it, blocked on the held-back input.
    # (With a decoding worker blocked there, multiprocessing's fd-sharing thread printed a
    # traceback on Ctrl-C: NOTES.md, h2-suite.)
    command = [sys.executable, "-m", "asttag", "tag", "-m", str(model_path), "--threads", "1",
               str(folder), str(fifo), "-o", str(out), "-b", "4", "--workers", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    signal_once_journalled(proc, journal, signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=120)  # as the other real processes: a starved one exits late
    finally:
        release(fifo)
    assert proc.returncode == 130, stderr
    assert f"kept in {journal}; run the same command again" in " ".join(stderr.split())
    assert "Traceback" not in stderr and stdout == "" and journal.exists() and not out.exists()


def test_one_file_under_two_spellings_gives_the_same_output_to_a_file_and_stdout(
        model_path, recordings, tmp_path, monkeypatch):
    monkeypatch.chdir(recordings[0].parent)
    spellings = (recordings[0].name, f"./{recordings[0].name}")
    streamed = invoke(model_path, *spellings, "-f", "csv")
    written = invoke(model_path, *spellings, "-o", tmp_path / "out.csv")
    assert streamed.exit_code == written.exit_code == 0, (streamed.stderr, written.stderr)
    assert (tmp_path / "out.csv").read_text() == streamed.stdout
    assert streamed.stdout == invoke(model_path, spellings[0], "-f", "csv").stdout  # tagged once
    assert "./rec0.wav names the same file as rec0.wav" in " ".join(streamed.stderr.split())


def test_progress_on_one_long_file_shows_the_share_of_its_audio_done(tmp_path):
    from asttag.cli.jobs import JobProgress
    from asttag.runs import JobPlan

    wav = write_wave(tmp_path / "long.wav", 6.0)
    progress = JobProgress(enabled=True)
    try:
        progress.planned(JobPlan(files=1, todo=1, paths=[str(wav)]))
        progress.audio(1.5)
        assert progress._bar is not None
        task = progress._bar.tasks[0]
        assert (task.total, task.completed, task.percentage) == (6.0, 1.5, 25.0)
        assert (task.fields["files"], task.fields["audio"]) == ("0/1 files",
                                                                "0:00:01 of 0:00:06 audio")
    finally:
        progress.close()
