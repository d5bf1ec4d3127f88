"""The run directory layout: one place that says where a run keeps what."""

from __future__ import annotations

from asttag.rundir import CHECKPOINT_GLOB, RunDirectory, fold_directory


def test_checkpoints_are_listed_in_epoch_order_and_named_as_written(tmp_path):
    run = RunDirectory(tmp_path)
    for epoch in (10, 2, 1):
        run.checkpoint(epoch).parent.mkdir(exist_ok=True)
        run.checkpoint(epoch).touch()
    (tmp_path / "checkpoints" / "notes.txt").touch()
    assert [p.name for p in run.checkpoints()] == [f"epoch_{e:03d}.safetensors" for e in (1, 2, 10)]
    assert sorted(tmp_path.glob(CHECKPOINT_GLOB)) == run.checkpoints()


def test_metrics_round_trip_and_a_new_run_takes_a_free_folder(tmp_path, monkeypatch):
    run = RunDirectory(tmp_path / "run")
    assert run.read_metrics() == [] and not run.started()
    run.write_metrics([{"epoch": 1}, {"epoch": 2}])
    assert run.read_metrics() == [{"epoch": 1}, {"epoch": 2}]
    assert fold_directory(tmp_path, 3) == tmp_path / "fold_3"
    monkeypatch.chdir(tmp_path)
    first = RunDirectory.new("esc50")
    first.path.mkdir(parents=True)
    second = RunDirectory.new("esc50")
    assert second.path != first.path and second.path.parent == first.path.parent
