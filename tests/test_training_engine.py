"""The training engine: run directories, learning, target sources, accumulation, and exact
resume after a kill."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.cli import app
from asttag.recipes import load_recipe
from asttag.thresholds import FALLBACK, recommended
from asttag.training import Runtime, TrainingError, resume, train
from training_fixtures import esc_recipe, finetune_args, make_esc50, same_weights, tiny_recipe

CPU = Runtime(device="cpu")


def test_a_run_writes_its_directory(tmp_path, esc):
    recipe = esc_recipe(tmp_path, esc, epochs=2, average_epochs=[1, 2], mixup=0.5, freqm=8, timem=10)
    result = train(recipe, tmp_path / "run", runtime=CPU)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"recipe.yaml", "metrics.jsonl", "checkpoints",
                                                "training_state.pt", "best.safetensors",
                                                "averaged.safetensors", "summary.json"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"train_loss", "valid_loss", "accuracy", "mAP", "lr", "samples_per_second"} <= set(records[0])
    assert load_recipe(run / "recipe.yaml") == recipe
    meta = checkpoint.read_metadata(run / "checkpoints" / "epoch_002.safetensors")
    assert meta["extra"]["epoch"] == 2 and meta["extra"]["recipe"] == "tiny"
    assert meta["extra"]["metrics"]["accuracy"] == records[1]["accuracy"]
    # The event threshold it recommends was chosen on the validation clips, the rule recorded.
    recorded = recommended(checkpoint.load(run / "checkpoints" / "epoch_002.safetensors"))
    assert recorded.to_dict() == records[1]["event_threshold"] and "micro-F1" in recorded.rule
    assert recorded != FALLBACK and 0 < recorded.value < 1
    assert recommended(checkpoint.load(run / "averaged.safetensors")) != FALLBACK
    best = result.summary["best_epoch"]
    assert same_weights(run / "best.safetensors", run / "checkpoints" / f"epoch_{best:03d}.safetensors")
    averaged = checkpoint.load(run / "averaged.safetensors")
    one, two = (checkpoint.load(run / "checkpoints" / f"epoch_00{e}.safetensors") for e in (1, 2))
    torch.testing.assert_close(averaged.head.weight, (one.head.weight + two.head.weight) / 2)
    state = torch.load(run / "training_state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["global_step"] == 10  # 40 clips, batches of 8
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metric"] == "accuracy" and summary["averaged"]["epochs"] == [1, 2]
    # A finished run resumed only finishes again; a started one refuses a fresh start.
    assert resume(run, runtime=CPU).summary["best"] == result.summary["best"]
    with pytest.raises(TrainingError, match="already holds a training run"):
        train(recipe, run, runtime=CPU)


def test_batches_must_split_over_accumulation(tmp_path, esc):
    with pytest.raises(TrainingError, match="batch_size 8 does not split into 1 process"):
        train(esc_recipe(tmp_path, esc, grad_accum=3), tmp_path / "run", runtime=CPU)
    assert not (tmp_path / "run").exists()


def test_gradient_accumulation_matches_one_big_batch(tmp_path, esc):
    # Without dropout or augmentation two half batches give the gradients of the whole batch;
    # Adam turns rounding noise in near-zero gradients into steps of up to lr, hence atol.
    one = train(esc_recipe(tmp_path, esc, epochs=1), tmp_path / "one", runtime=CPU)
    two = train(esc_recipe(tmp_path, esc, epochs=1, grad_accum=2), tmp_path / "two", runtime=CPU)
    a, b = (load_file(str(r.run_dir / "checkpoints" / "epoch_001.safetensors")) for r in (one, two))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-4, rtol=1e-3)


def test_a_target_source_replaces_the_data_targets(tmp_path, esc):
    seen = []

    def uniform(inputs, targets):
        seen.append((tuple(inputs.shape), tuple(targets.shape)))
        return torch.full_like(targets, 1 / targets.shape[1])

    recipe = esc_recipe(tmp_path, esc, epochs=1)
    train(recipe, tmp_path / "teacher", runtime=CPU, targets=uniform)
    train(recipe, tmp_path / "data", runtime=CPU)
    assert seen[0] == ((8, 100, 64), (8, 5)) and len(seen) == 5
    assert not same_weights(tmp_path / "teacher" / "best.safetensors", tmp_path / "data" / "best.safetensors")


def test_a_tiny_ast_learns_five_synthetic_sound_types(tmp_path):
    """From scratch on a generated ESC-50-layout set, >= 90% on the held-out fold."""
    data = make_esc50(tmp_path / "esc", per_fold=12)
    recipe = esc_recipe(tmp_path, data, epochs=12, lr=5e-4, lr_decay=0.8, lr_decay_start=1)
    result = train(recipe, tmp_path / "run", runtime=Runtime(device="cpu", cache=tmp_path / "cache"))
    assert result.summary["last"]["accuracy"] >= 0.9, result.summary


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, esc):
    recipe = tiny_recipe(tmp_path / "recipe.yaml", epochs=3, mixup=0.5, freqm=8, timem=10,
                         noise=True, average_epochs=[2, 3])
    extra = ("--workers", "1")
    # Only the killed run needs a process of its own; the others run here (a process start costs
    # more than their training).
    whole = CliRunner().invoke(app, finetune_args(esc, recipe, tmp_path / "whole", *extra))
    assert whole.exit_code == 0, whole.output
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "asttag",
                                *finetune_args(esc, recipe, killed, *extra)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "training_state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = torch.load(state, weights_only=True)["epoch"]
    assert done < 3, "the run ended before it could be killed"
    resumed = CliRunner().invoke(app, ["finetune", "--resume", str(killed), "--device", "cpu", "-q"])
    assert resumed.exit_code == 0, resumed.output
    for name in ("checkpoints/epoch_003.safetensors", "best.safetensors", "averaged.safetensors"):
        assert same_weights(tmp_path / "whole" / name, killed / name), name
    strip = lambda path: [{k: v for k, v in json.loads(line).items() if "second" not in k}
                          for line in path.read_text().splitlines()]
    assert strip(killed / "metrics.jsonl") == strip(tmp_path / "whole" / "metrics.jsonl")
