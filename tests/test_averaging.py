"""Weight averaging: the mean itself, refusals that name the difference, and member selection."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.averaging import (
    AveragingError,
    average_checkpoints,
    expand_sources,
    select_top,
    select_window,
    write_average,
)
from asttag.cli import app
from asttag.features import FeatureConfig
from asttag.labels import LabelSet
from asttag.model import AST
from conftest import tiny_config, tiny_model

# mAP stored per epoch in the fake run: epochs 3 and 5 are the best two.
RUN_MAP = {1: 0.10, 2: 0.20, 3: 0.40, 4: 0.25, 5: 0.35}


def save(model, path: Path, **extra) -> Path:
    return checkpoint.save(model, path, extra=extra)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A training run directory as the training engine lays it out: one checkpoint per epoch."""
    run = tmp_path / "run"
    for epoch, value in RUN_MAP.items():
        save(tiny_model(seed=epoch), run / "checkpoints" / f"epoch_{epoch:03d}.safetensors",
             epoch=epoch, metrics={"mAP": value, "loss": 1 - value})
    save(tiny_model(seed=99), run / "best.safetensors", epoch=3, metrics={"mAP": 0.4})
    return run


def mean_state(*models) -> dict[str, torch.Tensor]:
    states = [m.state_dict() for m in models]
    return {k: sum(s[k].double() for s in states) / len(states) for k in states[0]}


def assert_weights(model, expected: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value.double(), expected[key], rtol=0, atol=1e-7, msg=key)


def test_two_checkpoints_average_to_the_element_wise_mean(tmp_path):
    a, b = tiny_model(seed=1), tiny_model(seed=2)
    averaged = average_checkpoints([save(a, tmp_path / "a.safetensors"),
                                    save(b, tmp_path / "b.safetensors")])
    assert_weights(averaged, mean_state(a, b))
    assert averaged.config == a.config and averaged.labels == a.labels


def test_averaging_one_checkpoint_gives_it_back_exactly(tmp_path):
    a = tiny_model(seed=1)
    averaged = average_checkpoints([save(a, tmp_path / "a.safetensors")])
    for key, value in a.state_dict().items():
        assert torch.equal(averaged.state_dict()[key], value)


@pytest.mark.parametrize(
    ("other", "named"),
    [
        (lambda: AST(tiny_config(stride=(12, 12))), "architecture stride: [10, 10] vs [12, 12]"),
        (lambda: AST(tiny_config(), features=FeatureConfig(num_mel_bins=32, target_length=64,
                                                           mean=-6.6, std=5.3)),
         "features mean: -4.2677393 vs -6.6"),
        (lambda: AST(tiny_config(), labels=LabelSet.from_names(["a", "b", "c", "d"])),
         "label ids differ at 4 position(s), first at 0: 'class_0' vs 'a'"),
        (lambda: AST(tiny_config(num_classes=5)), "architecture num_classes: 4 vs 5"),
    ],
    ids=["stride", "features", "labels", "classes"],
)
def test_incompatible_checkpoints_are_refused_with_the_difference_named(tmp_path, other, named):
    a = save(tiny_model(), tmp_path / "a.safetensors")
    b = save(other(), tmp_path / "b.safetensors")
    with pytest.raises(AveragingError) as caught:
        average_checkpoints([a, b])
    assert named in str(caught.value)
    assert str(b) in str(caught.value)


def test_a_run_directory_expands_to_its_epoch_checkpoints(run_dir):
    found = expand_sources([run_dir])
    assert [c.epoch for c in found] == [1, 2, 3, 4, 5]
    assert found[2].metrics == {"mAP": 0.40, "loss": pytest.approx(0.6)}
    assert all(c.path.parent.name == "checkpoints" for c in found)  # best.safetensors left out


def test_the_epoch_window_selects_exactly_its_epochs(run_dir):
    found = expand_sources([run_dir])
    assert [c.epoch for c in select_window(found, first=2, last=4)] == [2, 3, 4]
    assert [c.epoch for c in select_window(found, first=4)] == [4, 5]
    assert [c.epoch for c in select_window(found, last=2)] == [1, 2]


def test_a_window_with_a_missing_epoch_is_refused(run_dir):
    (run_dir / "checkpoints" / "epoch_003.safetensors").unlink()
    with pytest.raises(AveragingError, match=r"no checkpoint for epoch\(s\) 3 of the window 2..4"):
        select_window(expand_sources([run_dir]), first=2, last=4)


def test_top_n_ranks_by_the_stored_metric(run_dir):
    found = expand_sources([run_dir])
    assert [c.epoch for c in select_top(found, 2, metric="mAP")] == [3, 5]
    assert [c.epoch for c in select_top(found, 3, metric="loss")] == [3, 5, 4]
    with pytest.raises(AveragingError, match="'AUC' is not stored.*metrics stored: loss, mAP"):
        select_top(found, 2, metric="AUC")


def test_a_glob_expands_in_sorted_order(run_dir):
    found = expand_sources([str(run_dir / "checkpoints" / "epoch_00[24].safetensors")])
    assert [c.epoch for c in found] == [2, 4]
    with pytest.raises(AveragingError, match="no file matches"):
        expand_sources([str(run_dir / "nothing*.safetensors")])


def test_the_output_records_its_members(run_dir, tmp_path):
    chosen = select_window(expand_sources([run_dir]), first=1, last=2)
    result = write_average(chosen, tmp_path / "avg.safetensors")
    extra = checkpoint.read_metadata(result.path)["extra"]
    assert [m["epoch"] for m in extra["averaged_from"]] == [1, 2]
    assert extra["averaged_from"][1]["metrics"]["mAP"] == 0.20
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()


def test_cli_averages_a_run_window_and_prints_the_sha256(run_dir, tmp_path):
    out = tmp_path / "avg.safetensors"
    runner = CliRunner()
    result = runner.invoke(app, ["average", str(run_dir), "--from-epoch", "2", "--to-epoch", "4",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    digest, path = result.stdout.strip().split("  ")
    assert Path(path) == out
    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()
    expected = mean_state(*(tiny_model(seed=e) for e in (2, 3, 4)))
    assert_weights(checkpoint.load(out), expected)

    again = runner.invoke(app, ["average", str(run_dir), "--top", "2", "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.stderr
    forced = runner.invoke(app, ["average", str(run_dir), "--top", "2", "-o", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert [m["epoch"] for m in checkpoint.read_metadata(out)["extra"]["averaged_from"]] == [3, 5]


def test_cli_names_the_difference_on_stderr(tmp_path):
    a = save(tiny_model(), tmp_path / "a.safetensors")
    b = save(AST(tiny_config(stride=(12, 12))), tmp_path / "b.safetensors")
    out = tmp_path / "o.safetensors"
    result = CliRunner().invoke(app, ["average", str(a), str(b), "-o", str(out)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "architecture stride" in result.stderr
    assert not out.exists()
