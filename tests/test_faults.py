"""Faults of the output side: full and read-only file systems, a full or closed stdout, two
runs on one output, a damaged journal. Each ends in one `error: PATH: REASON` line and exit 1,
with nothing that looks complete left behind.

Full and read-only locations are small tmpfs mounts (CI runs as root); where mounting is not
allowed the tests that need one are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.cli import app
from asttag.journal import Journal
from test_tagger import tiny_model, write_wave


@contextlib.contextmanager
def _tmpfs(where: Path, *options: str):
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(["size=64k", *options]),
                           "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.fixture
def full_dir(tmp_path):
    """A directory on a file system with no space left."""
    with _tmpfs(tmp_path / "full") as where:
        with contextlib.suppress(OSError), open(where / "filler", "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 1024)
        yield where


@pytest.fixture
def read_only_dir(tmp_path):
    with _tmpfs(tmp_path / "ro", "ro") as where:
        yield where


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return checkpoint.save(tiny_model(), tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("audio")
    return [write_wave(folder / f"rec{i}.wav", 1.5, seed=i) for i in range(3)]


def tag(model: Path, *args):
    # The default decoding thread, as a user runs it.
    return CliRunner().invoke(app, ["tag", "-m", str(model), "--threads", "1",
                                    "--segments", *map(str, args)])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def leftovers(directory: Path) -> list[str]:
    """What is in `directory` besides the filler: no output may look complete."""
    return sorted(p.name for p in directory.rglob("*") if p.name != "filler" and p.is_file()
                  and not p.name.endswith(".asttag-journal"))


@pytest.mark.parametrize("kind", ["full", "read-only"])
@pytest.mark.parametrize("target", ["-o", "--output-dir"])
def test_tag_output_on_a_full_or_read_only_file_system(model_path, recordings, request, kind,
                                                       target):
    where = request.getfixturevalue("full_dir" if kind == "full" else "read_only_dir")
    out = where / ("out.csv" if target == "-o" else "out")
    result = tag(model_path, *recordings, target, out)
    assert result.exit_code == 1, result.output
    reason = "no space left on device" if kind == "full" else "read-only file system"
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: {out}") and line.endswith(f": {reason}")
    assert "Traceback" not in result.output
    assert leftovers(where) == []


def test_a_full_disk_keeps_the_journal_and_the_rerun_completes(model_path, recordings, tmp_path,
                                                               full_dir):
    out = full_dir / "out.csv"
    assert tag(model_path, *recordings, "-o", out).exit_code == 1
    (full_dir / "filler").unlink()
    again = tag(model_path, *recordings, "-o", out)
    assert again.exit_code == 0, again.output
    clean = tag(model_path, *recordings, "-o", tmp_path / "clean.csv")
    assert clean.exit_code == 0
    assert out.read_bytes() == (tmp_path / "clean.csv").read_bytes()


def run_process(model: Path, *args, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "asttag", "tag", "-m", str(model), "--threads", "1",
               *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_stdout_on_a_full_disk(model_path, recordings):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "asttag", "tag", "-m", str(model_path),
                               "--threads", "1", *map(str, recordings)],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == ["error: stdout: no space left on device"]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


def test_a_closed_stdout(model_path, recordings, tmp_path):
    closed = {"stdout": None, "preexec_fn": lambda: os.close(1)}
    proc = subprocess.run([sys.executable, "-m", "asttag", "tag", "-m", str(model_path),
                           "--threads", "1", str(recordings[0])], stderr=subprocess.PIPE,
                          text=True, timeout=120, **closed)
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == ["error: stdout: closed"]
    assert "Traceback" not in proc.stderr
    # Results that go to a file need no stdout, and never land on descriptor 1 by chance.
    out = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, "-m", "asttag", "tag", "-m", str(model_path),
                           "--threads", "1", str(recordings[0]), "-o", str(out)],
                          stderr=subprocess.PIPE, text=True, timeout=120, **closed)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("file,start,end,label,label_id,score\n")


def test_a_second_run_on_the_same_output_is_refused(model_path, recordings, tmp_path):
    out = tmp_path / "out.csv"
    first = Journal(out, run="another run's options")
    first.start()  # a run in progress
    try:
        result = tag(model_path, *recordings, "-o", out)
    finally:
        first.release()
    assert result.exit_code == 1
    assert error_lines(result.stderr) == [
        (f"error: {out}: another asttag run (pid {os.getpid()}) is writing it now; wait for it "
         "to finish or write elsewhere")]
    assert not out.exists()


def test_a_damaged_journal_entry_is_tagged_again(model_path, recordings, tmp_path, monkeypatch):
    clean = tmp_path / "clean.csv"
    assert tag(model_path, *recordings, "-o", clean).exit_code == 0
    out = tmp_path / "out.csv"
    with monkeypatch.context() as m:  # a run killed after its last file, before the assembly
        m.setattr(Journal, "assemble", lambda self, keys, writer: 0)
        m.setattr(Journal, "remove", Journal.release)
        assert tag(model_path, *recordings, "-o", out).exit_code == 0
    journal = tmp_path / "out.csv.asttag-journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4  # the header and three files
    lines[2] = lines[2][:40] + b"\n"  # the second file's entry cut short, then a new line
    journal.write_bytes(b"".join(lines))
    result = tag(model_path, *recordings, "-o", out)
    assert result.exit_code == 0, result.output
    assert "dropped 1 damaged entry; their files are tagged again" in result.stderr
    assert "2 of 3 file(s) already done" in result.stderr
    assert out.read_bytes() == clean.read_bytes()
    assert not journal.exists()


def test_file_system_errors_name_the_output_not_the_temporary_file(model_path, recordings,
                                                                   tmp_path, monkeypatch):
    """Where no tmpfs can be mounted this still holds the wording: an injected ENOSPC."""
    from asttag import writers

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writers.Writer, "footer", no_space)  # while the file is written
    out = tmp_path / "dir"
    result = tag(model_path, recordings[0], "--output-dir", out)
    assert error_lines(result.stderr) == [f"error: {out}/rec0.csv: no space left on device"]
    assert result.exit_code == 1 and leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> dict[str, Path]:
    from test_cli_evaluate import FREQUENCIES, model_file

    from conftest import write_tone

    root = tmp_path_factory.mktemp("models")
    for name, freq in FREQUENCIES.items():
        (root / "data" / name).mkdir(parents=True)
        write_tone(root / "data" / name / f"{name}.wav", seconds=0.5, freq=freq)
    return {"a": model_file(root / "a.safetensors", 0), "b": model_file(root / "b.safetensors", 1),
            "data": root / "data"}


COMMANDS = {
    "average": lambda m, out: ["average", m["a"], m["b"], "-o", out / "avg.safetensors"],
    "ensemble create": lambda m, out: ["ensemble", "create", m["a"], m["b"],
                                       "-o", out / "ens.safetensors"],
    "models convert": lambda m, out: ["models", "convert", m["a"], out / "conv.safetensors"],
    "models convert --to transformers": lambda m, out: ["models", "convert", m["a"], out / "hf",
                                                        "--to", "transformers"],
    "evaluate --save-predictions": lambda m, out: ["evaluate", "-m", m["a"], m["data"], "-f",
                                                   "json", "--save-predictions", out / "p.npz"],
}


@pytest.mark.parametrize("kind", ["full", "read-only"])
@pytest.mark.parametrize("command", COMMANDS)
def test_other_commands_on_a_full_or_read_only_file_system(two_models, request, kind, command):
    where = request.getfixturevalue("full_dir" if kind == "full" else "read_only_dir")
    args = [str(a) for a in COMMANDS[command](two_models, where)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    reason = "no space left on device" if kind == "full" else "read-only file system"
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: {where}/") and line.endswith(f": {reason}"), line
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert leftovers(where) == [] and [p.name for p in where.iterdir() if p.name != "filler"] == []


@pytest.mark.parametrize("command", ["average", "ensemble create", "models convert",
                                     "evaluate --save-predictions"])
def test_an_output_file_that_is_a_directory_is_refused_before_any_work(two_models, tmp_path,
                                                                       command):
    args = [str(a) for a in COMMANDS[command](two_models, tmp_path)] + (
        ["--force"] if command != "evaluate --save-predictions" else [])
    Path(args[args.index("-o") + 1] if "-o" in args else args[-2 if "--force" in args else -1]
         ).mkdir()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    [line] = error_lines(result.stderr)
    assert line.endswith(": is a directory; name the file to write")
