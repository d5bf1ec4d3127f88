"""Whole jobs from Python: tagging to a stream, a file or a directory, sharded; torchrun's variables."""

from __future__ import annotations

import io

import pytest

from asttag.datasets import detect_layout
from asttag.runs import JobError, JobObserver, Shard, check_destinations, tag_files
from asttag.writers import make_writer
from test_tagger import tagger, write_wave
from training_fixtures import make_esc50, make_folder, make_speechcommands


@pytest.fixture
def recordings(tmp_path) -> list[str]:
    folder = tmp_path / "audio"
    folder.mkdir()
    return [str(write_wave(folder / f"rec{i}.wav", seconds, seed=i))
            for i, seconds in enumerate((2.5, 0.4, 1.0))]


class Recorder(JobObserver):
    def __init__(self, *, stop_after: int | None = None) -> None:
        self.plans, self.tagged, self.failures = [], [], []
        self.stop_after = stop_after

    def planned(self, plan):
        self.plans.append(plan)

    def done(self, result):
        self.tagged.append(result.path)
        if len(self.tagged) == self.stop_after:
            raise KeyboardInterrupt  # as a user's Ctrl-C

    def failed(self, failure):
        self.failures.append(failure.path)


def test_a_stream_a_file_and_a_directory_hold_the_same_results(recordings, tmp_path):
    writer = make_writer("csv")
    stream = io.StringIO()
    first = tag_files(tagger(), recordings, writer=writer, stream=stream)
    assert first.tagged == 3 and first.failures == []
    output = tmp_path / "tags.csv"
    tag_files(tagger(), recordings, writer=writer, output=output, model="tiny")
    assert output.read_text() == stream.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "tags.csv"]  # no journal left
    tag_files(tagger(), recordings, writer=writer, output_dir=tmp_path / "each")
    each = "".join((tmp_path / "each" / f"rec{i}.csv").read_text().split("\n", 1)[1] for i in range(3))
    assert each == stream.getvalue().split("\n", 1)[1]


def test_a_file_job_resumes_from_its_journal_and_failures_are_logged(recordings, tmp_path):
    writer = make_writer("jsonl")
    output, log = tmp_path / "tags.jsonl", tmp_path / "errors.tsv"
    missing = str(tmp_path / "gone.wav")
    observer = Recorder()
    # A job stopped after the first file leaves its journal; the next run tags the rest only.
    stopped = Recorder(stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        tag_files(tagger(), recordings, writer=writer, output=output, model="tiny", observer=stopped)
    assert not output.exists()
    result = tag_files(tagger(), [*recordings, missing], writer=writer, output=output, model="tiny",
                       errors_log=log, observer=observer)
    assert observer.plans[0].resumed == 1 and observer.plans[0].todo == 3
    assert observer.tagged == recordings[1:] and observer.failures == [missing]
    assert result.tagged == 2 and [f.path for f in result.failures] == [missing]
    assert log.read_text().startswith(f"{missing}\t")
    whole = io.StringIO()
    tag_files(tagger(), recordings, writer=writer, stream=whole)
    assert output.read_text() == whole.getvalue()


def test_each_shard_tags_its_share_into_one_directory(recordings, tmp_path):
    writer = make_writer("json")
    plans = []
    for rank in (0, 1):
        observer = Recorder()
        tag_files(tagger(), recordings, writer=writer, output_dir=tmp_path / "out",
                  shard=Shard(rank=rank, world=2), observer=observer)
        plans.append(observer.tagged)
    assert plans == [recordings[0::2], recordings[1::2]]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["rec0.json", "rec1.json", "rec2.json"]


@pytest.mark.parametrize("environ,parameter,message", [
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE", "at least 1"),
    ({"RANK": "1", "WORLD_SIZE": "1"}, "RANK", "from 0 to 0"),
    ({"RANK": "1"}, "RANK", "from 0 to 0"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, "RANK", "from 0 to 1"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE", "not a whole number"),
])
def test_torchrun_variables_are_checked(environ, parameter, message):
    with pytest.raises(JobError, match=message) as caught:
        Shard.from_environment(environ)
    assert caught.value.parameter == parameter


def test_torchrun_variables_give_the_shard_and_its_gpu():
    assert Shard.from_environment({}) == Shard(rank=0, world=1)
    shard = Shard.from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert shard.files([str(i) for i in range(10)]) == ["3", "7"]
    assert shard.device("cpu") == "cpu"


def test_destinations_are_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    for kwargs, parameter in [
        ({"output": ""}, "output"),
        ({"output": tmp_path}, "output"),
        ({"output_dir": tmp_path / "file"}, "output_dir"),
        ({"errors_log": tmp_path}, "errors_log"),
        ({"output": "a.csv", "output_dir": tmp_path}, "output"),
        ({"shard": Shard(rank=0, world=2)}, "output"),  # many processes, one stream: refused
    ]:
        with pytest.raises(JobError) as caught:
            check_destinations(**kwargs)
        assert caught.value.parameter == parameter
    check_destinations(output=tmp_path / "new.csv", output_dir=None, errors_log=tmp_path / "e.tsv")


def test_two_inputs_writing_one_output_are_refused_before_tagging(tmp_path):
    (tmp_path / "a").mkdir()
    one = write_wave(tmp_path / "a" / "x.wav", 0.5)
    other = tmp_path / "a" / "x.flac"  # refused before anything reads it
    other.write_bytes(one.read_bytes())
    observer = Recorder()
    with pytest.raises(JobError, match="would both write") as caught:
        tag_files(tagger(), [str(one), str(other)], writer=make_writer("csv"),
                  output_dir=tmp_path / "out", observer=observer)
    assert caught.value.parameter == "paths" and observer.plans == []


def test_data_layouts_are_detected_from_their_files(tmp_path):
    assert detect_layout(make_esc50(tmp_path / "esc", per_fold=1)) == "esc50"
    assert detect_layout(make_speechcommands(tmp_path / "sc", per_word=1)) == "speechcommands"
    assert detect_layout(make_folder(tmp_path / "folder", per_class=1)) == "folder"
    (tmp_path / "eval.json").write_text("{}")
    (tmp_path / "list.csv").write_text("")
    assert detect_layout(tmp_path / "eval.json") == "audioset"
    assert detect_layout(tmp_path / "list.csv") == "manifest"
