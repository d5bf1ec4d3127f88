"""What the training commands print while a run goes on (asttag.cli.reporting)."""

from __future__ import annotations

from asttag.cli.reporting import TrainingProgress


def test_progress_takes_the_scoring_after_the_last_epoch(capsys):
    # The engine's calls for one epoch and then the test split and the averaged model: scoring
    # after the last epoch once raised KeyError (the bar updated the epoch's removed task).
    progress = TrainingProgress(enabled=True)
    progress.epoch_started(1, epochs=1, steps=2)
    progress.step_done(0.5)
    progress.step_done(0.25)
    progress.validating("validation")
    progress.epoch_done({"epoch": 1, "train_loss": 0.375, "samples_per_second": 3.0})
    progress.validating("test")
    progress.validating("averaged model")
    progress.close()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "epoch 1  train loss 0.3750  3.0 samples/s" in captured.err
