"""The resume journal: one writer at a time, damaged entries dropped, names of any length."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_writers import result

from asttag.journal import Journal, JournalBusy, run_key
from asttag.writers import make_writer

RUN = run_key({"hop": 1})


def test_a_second_writer_of_the_same_output_is_refused(tmp_path):
    out = tmp_path / "out.csv"
    first = Journal(out, run=RUN)
    first.start()
    with pytest.raises(JournalBusy) as caught:
        Journal(out, run=run_key({"hop": 2})).start()  # other options: the same output
    assert caught.value.filename == str(out)
    assert f"pid {os.getpid()}" in caught.value.strerror
    first.release()
    second = Journal(out, run=RUN)
    second.start()
    second.remove()
    assert list(tmp_path.iterdir()) == []


def test_the_lock_of_a_run_that_dies_is_released(tmp_path):
    out = tmp_path / "out.csv"
    script = ("import os, signal, sys; from asttag.journal import Journal; "
              f"Journal(sys.argv[1], run={RUN!r}).start(); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", script, str(out)], timeout=60)
    assert proc.returncode == -9
    assert (tmp_path / "out.csv.asttag-lock").exists()  # left behind, but not held
    journal = Journal(out, run=RUN)
    assert journal.start().done == 0
    journal.release()


def test_a_damaged_entry_is_dropped_and_its_file_done_again(tmp_path):
    out = tmp_path / "out.csv"
    writer = make_writer("csv")
    clean = writer.render([result(f"{k}.wav") for k in ("a", "b", "c")])
    first = Journal(out, run=RUN)
    first.start()
    for k in ("a", "b", "c"):
        first.record(k, f"{k}.wav", writer.chunk(result(f"{k}.wav")))
    first.release()
    lines = first.path.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"key": "b", "chu\xff\x00nk": 3}\n'  # header, a, b (damaged), c
    first.path.write_bytes(b"".join(lines))
    again = Journal(out, run=RUN)
    status = again.start()
    assert (status.done, status.damaged) == (2, 1)
    assert not again.done("b")
    again.record("b", "b.wav", writer.chunk(result("b.wav")))
    assert again.assemble(["a", "b", "c"], writer) == 3
    again.remove()
    assert out.read_text() == clean


@pytest.mark.parametrize("length", [241, 255])
def test_outputs_with_names_at_the_limit(tmp_path, length):
    out = tmp_path / ("o" * (length - 4) + ".csv")
    writer = make_writer("csv")
    journal = Journal(out, run=RUN)
    journal.start()
    assert len(os.fsencode(journal.path.name)) <= 255
    journal.record("a", "a.wav", writer.chunk(result("a.wav")))
    journal.release()
    again = Journal(out, run=RUN)
    assert again.start().done == 1
    again.assemble(["a"], writer)
    again.remove()
    assert os.listdir(tmp_path) == [out.name]
    assert out.read_text() == writer.render([result("a.wav")])


def test_a_forked_worker_that_outlives_its_run_does_not_hold_the_lock(tmp_path):
    out = tmp_path / "out.csv"
    script = ("import os, signal, sys, time; from asttag.journal import Journal; "
              f"Journal(sys.argv[1], run={RUN!r}).start(); "
              "child = os.fork(); "
              "(os.close(1), os.close(2), time.sleep(30), os._exit(0)) if child == 0 else None; "
              "print(child, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True,
                          text=True, timeout=60)
    worker = int(proc.stdout)  # a DataLoader worker left running after a kill -9 of its run
    try:
        journal = Journal(out, run=RUN)
        journal.start()  # the resume is not refused
        journal.remove()
    finally:
        os.kill(worker, 9)
