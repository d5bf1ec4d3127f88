"""Hostile inputs through `asttag tag` as a real process: every bad input is one error line.

The corpus is generated here, small (each file a second or two) and fast: odd and extreme sample
rates, fuzzed headers, extreme samples, broken and truncated files, containers without audio,
directories named like audio, unreadable files and directories, names that are not UTF-8. For each
run the test asserts the exit status, exactly one `error:` line naming each bad input, no
traceback, every good file tagged, stdout holding data only, and the run's peak memory.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asttag import checkpoint
from asttag.names import display_name
from conftest import write_with_pyav
from test_tagger import bad_inputs, tiny_model, write_wave

# Peak memory of a run over short files at any sample rate (torch itself is about 0.7 GB).
RSS_LIMIT_BYTES = 1.5e9

# Runs the CLI and writes the process's own peak RSS (kB) to $ASTTAG_TEST_RSS at exit. VmHWM, not
# getrusage: a child's ru_maxrss keeps the parent's size at fork (a big pytest process).
_MEASURED = (
    "import atexit, os, runpy, sys\n"
    "def peak():\n"
    "    with open('/proc/self/status') as status:\n"
    "        kb = next(line.split()[1] for line in status if line.startswith('VmHWM:'))\n"
    "    with open(os.environ['ASTTAG_TEST_RSS'], 'w') as out:\n"
    "        out.write(kb)\n"
    "atexit.register(peak)\n"
    "sys.argv[0] = 'asttag'\n"
    "runpy.run_module('asttag', run_name='__main__')\n"
)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return checkpoint.save(tiny_model(), tmp_path_factory.mktemp("model") / "tiny.safetensors")


def run_tag(model: Path, args: list[str], tmp_path: Path, *, stdin: bytes | None = None,
            prefix: tuple[str, ...] = (), strict_io: bool = False):
    """`asttag tag` in its own process; (returncode, stdout, stderr, peak RSS in bytes)."""
    rss = tmp_path / "rss"
    env = {**os.environ, "ASTTAG_TEST_RSS": str(rss), "OMP_NUM_THREADS": "1"}
    if strict_io:  # a UTF-8 locale's strict stdin, as on most desktops
        env["PYTHONIOENCODING"] = "utf-8:strict"
    command = [*prefix, sys.executable, "-c", _MEASURED, "tag", "-m", str(model), "--threads", "1",
               "--workers", "0", *args]
    proc = subprocess.run(command, input=stdin, capture_output=True, timeout=300, env=env,
                          check=False)
    peak = int(rss.read_text()) * 1024 if rss.exists() else 0
    return proc.returncode, proc.stdout.decode("utf-8", "surrogateescape"), \
        proc.stderr.decode("utf-8", "replace"), peak


def check_run(stdout: str, stderr: str, good: list[Path], bad: dict[Path, str]) -> None:
    """One error line naming each bad input with its reason, every good file tagged, no more."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    for path, reason in bad.items():
        named = [line for line in errors if line.startswith(f"error: {display_name(path)}: ")]
        assert len(named) == 1, (path, errors)
        assert reason in named[0], (reason, named[0])
    assert len(errors) == len(bad), errors
    rows = list(csv.DictReader(io.StringIO(stdout)))  # stdout holds data only: it parses
    assert {row["file"] for row in rows} == {str(p) for p in good}
    assert all(np.isfinite(float(row["score"])) for row in rows)


def write_rate(path: Path, rate: int, seconds: float = 1.5) -> Path:
    t = np.arange(round(seconds * rate)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    return path


def fuzz_header(template: Path, path: Path, offset: int, fmt: str, value: int) -> Path:
    """`template` (a canonical 44-byte-header WAV) with one header field overwritten."""
    data = bytearray(template.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))
    return path


def corpus(root: Path) -> tuple[list[Path], dict[Path, str]]:
    """Good files (tagged) and bad ones (with the reason each must get), generated in root."""
    good = [write_wave(root / "good.wav", 2.0)]
    # Rates that share no factor with 16 kHz, and usual ones: all tagged, in bounded memory.
    good += [write_rate(root / f"rate{rate}.wav", rate) for rate in (16001, 11127, 44101, 191999)]
    good += [write_rate(root / "rate8000.wav", 8000)]
    good += [write_with_pyav(root / "film.mp4", np.zeros((2, 48000), np.float32) + 0.1, 48000,
                             "aac", video=True)]
    bad = {path: reason for path, reason in bad_inputs(root).values()}

    template = root / "template.wav"
    sf.write(str(template), np.full(8000, 0.1, np.float32), 16000, subtype="PCM_16")
    for name, offset, fmt, value, reason in [
        ("rate0", 24, "<I", 0, "cannot decode audio"),
        ("rate_huge", 24, "<I", 2**31 - 1, "unsupported sample rate 2147483647 Hz"),
        ("channels0", 22, "<H", 0, "cannot decode audio"),
        ("channels65535", 22, "<H", 65535, "cannot decode audio"),
        ("bits0", 34, "<H", 0, "cannot decode audio"),
    ]:
        bad[fuzz_header(template, root / f"fuzz_{name}.wav", offset, fmt, value)] = reason
    for name, offset, fmt, value in [("align0", 32, "<H", 0), ("datasize_huge", 40, "<I", 2**32 - 1),
                                     ("rate44101", 24, "<I", 44101)]:
        good.append(fuzz_header(template, root / f"fuzz_{name}.wav", offset, fmt, value))

    loud = np.full(32000, 0.1, np.float32)
    loud[16000] = 1e30
    sf.write(str(root / "loud.wav"), loud, 16000, subtype="FLOAT")
    bad[root / "loud.wav"] = "audio samples out of range (peak 1e+30, first at 1.000 s"
    (root / "folder.wav").mkdir()
    bad[root / "folder.wav"] = "is a directory"
    whole = write_with_pyav(root / "memo.m4a", np.zeros((1, 32000), np.float32) + 0.1, 16000, "aac")
    (root / "cut.m4a").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    good.append(whole)
    bad[root / "cut.m4a"] = "cannot decode audio (moov atom not found)"
    for name, reason in [("text.mkv", "cannot decode audio ("),
                         # not UTF-8; a .wav gets libsndfile's reason
                         (os.fsdecode(b"caf\xe9\xff.wav"), "cannot decode audio (Format not recognised")]:
        (root / name).write_text("no audio here\n" * 10)
        bad[root / name] = reason
    return good, bad


def test_every_hostile_input_is_one_error_line_and_good_files_are_tagged(model_path, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    good, bad = corpus(root)
    code, stdout, stderr, peak = run_tag(model_path, [*map(str, good + list(bad))], tmp_path)
    assert code == 1, stderr
    check_run(stdout, stderr, good, bad)
    assert 0 < peak < RSS_LIMIT_BYTES, f"peak RSS {peak / 1e9:.2f} GB"


def unprivileged() -> list[str]:
    """A command prefix under which permission bits hold: root reads everything, so drop its
    capabilities to override them (util-linux's setpriv)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permission bits cannot be tested")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_unreadable_inputs_and_names_from_stdin(model_path, tmp_path):
    root = tmp_path / "tree"
    (root / "locked").mkdir(parents=True)
    good = [write_wave(root / "a.wav", 1.0), write_wave(root / "sub.wav", 1.0)]
    write_wave(root / "locked" / "hidden.wav", 1.0)
    secret = write_wave(tmp_path / "secret.wav", 1.0)
    cut = tmp_path / os.fsdecode(b"memo\xe9.wav")
    cut.write_bytes(secret.read_bytes()[:30])
    inside = tmp_path / "closed" / "x.wav"
    inside.parent.mkdir()
    write_wave(inside, 1.0)
    bad = {
        root / "locked": "permission denied",   # met with -r
        secret: "permission denied",
        inside: "permission denied",            # a file in a directory that cannot be entered
        cut: "cannot decode audio",             # its name is not UTF-8, and comes on stdin
    }
    for path, mode in ((root / "locked", 0), (secret, 0), (inside.parent, 0o600)):
        path.chmod(mode)
    try:
        names = b"".join(os.fsencode(p) + b"\n" for p in (root, secret, inside, cut))
        code, stdout, stderr, _ = run_tag(model_path, ["-r", "-"], tmp_path, stdin=names,
                                          prefix=tuple(unprivileged()), strict_io=True)
    finally:
        for path in (root / "locked", secret, inside.parent):
            path.chmod(0o755)
    assert code == 1, stderr
    check_run(stdout, stderr, good, bad)
