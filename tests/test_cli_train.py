"""`asttag finetune` and `asttag train` end to end on tiny generated data sets in every layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.cli import app
from asttag.datasets import load_dataset, target_vector
from asttag.inference import example_logits
from training_fixtures import (
    make_audioset,
    make_esc50,
    make_folder,
    make_manifests,
    make_speechcommands,
    tiny_recipe,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    segments, label_file = make_audioset(root / "audioset")
    csv_manifest, soft_manifest = make_manifests(root / "own")
    return {
        "esc50": make_esc50(root / "ESC-50", per_fold=1, rate=44100),  # as released: 44.1 kHz
        "speechcommands": make_speechcommands(root / "speech_commands_v0.02"),
        "audioset": segments,
        "labels": label_file,
        "folder": make_folder(root / "folder"),
        "csv": csv_manifest,
        "soft": soft_manifest,
        "recipe": tiny_recipe(root / "tiny.yaml", epochs=1),
    }


def run(*args: object):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def finetune(data: dict, dataset: str, data_dir: Path, out: Path, *extra: object):
    result = run("finetune", dataset, "-d", data_dir, "--recipe", data["recipe"], "-o", out,
                 "--device", "cpu", "-q", *extra)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds the summary and nothing else
    assert summary["run_dir"] == str(out) and (out / "summary.json").exists()
    return summary


def test_esc50_fold(data, tmp_path):
    summary = finetune(data, "esc50", data["esc50"], tmp_path / "run", "--fold", "2")
    assert summary["metric"] == "accuracy" and summary["best_epoch"] == 1
    assert yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["data"] == {"fold": 2}


def test_speechcommands_reports_the_best_epoch_on_the_test_list(data, tmp_path):
    out = tmp_path / "run"
    summary = finetune(data, "speechcommands", data["speechcommands"], out,
                       "--set", "loss=bce", "--set", "mixup=0.6", "--set", "noise=true",
                       "--set", "freqm=8", "--set", "timem=8")
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert {k: recipe[k] for k in ("loss", "mixup", "noise", "freqm", "timem")} == {
        "loss": "bce", "mixup": 0.6, "noise": True, "freqm": 8, "timem": 8}
    assert set(summary["test"]) == {"best"}
    # The figure is the best checkpoint's on the test list, as `asttag evaluate` measures it.
    evaluated = run("evaluate", data["speechcommands"], "-m", out / "best.safetensors", "-l",
                    "speechcommands", "--split", "test", "--device", "cpu", "-f", "json")
    assert evaluated.exit_code == 0, evaluated.output
    (measured,) = json.loads(evaluated.stdout)["results"]
    assert summary["test"]["best"]["accuracy"] == measured["metrics"]["accuracy"]
    assert measured["metrics"]["n_examples"] == 3  # the test list, not the validation list


def test_audioset_segments_with_balanced_sampling_warmup_and_averaging(data, tmp_path):
    summary = finetune(
        data, "audioset", data["audioset"], tmp_path / "run", "-D", f"label_file={data['labels']}",
        "--epochs", "2", "--set", "loss=bce", "--set", "balanced_sampler=true",
        "--set", "warmup_steps=4", "--set", "average_epochs=[1, 2]", "--set", "mixup=0.5",
    )
    assert summary["metric"] == "mAP" and summary["averaged"]["epochs"] == [1, 2]
    assert (tmp_path / "run" / "averaged.safetensors").exists()


def test_train_on_an_ast_json_manifest(data, tmp_path):
    out = tmp_path / "run"
    result = run("train", "-d", data["audioset"] / "train.json", "--recipe", data["recipe"],
                 "-D", f"label_file={data['labels']}", "-D", f"valid={data['audioset'] / 'train.json'}",
                 "--set", "dataset=audioset", "--set", "loss=bce", "-o", out, "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metric"] == "mAP"


def test_folder_with_a_held_out_fraction(data, tmp_path):
    out = tmp_path / "run"
    summary = finetune(data, "folder", data["folder"], out, "-D", "valid_fraction=0.25")
    # The held-out quarter (3 of 12 clips) is what the best epoch was scored on.
    evaluated = run("evaluate", data["folder"], "-m", out / "best.safetensors", "-l", "folder",
                    "-D", "valid_fraction=0.25", "--split", "valid", "--device", "cpu", "-f", "json")
    assert evaluated.exit_code == 0, evaluated.output
    (measured,) = json.loads(evaluated.stdout)["results"]
    assert measured["metrics"]["n_examples"] == 3
    assert summary["best"]["accuracy"] == measured["metrics"]["accuracy"]


def test_manifest_with_labels_and_with_soft_scores(data, tmp_path):
    finetune(data, "manifest", data["csv"], tmp_path / "labels", "-D", "valid_fraction=0.34")
    soft = finetune(data, "manifest", data["soft"], tmp_path / "soft", "-D", f"valid={data['soft']}",
                    "--set", "loss=bce")
    # The validation loss is the BCE against the soft scores (0.8 and 0.1), not hard labels.
    model = checkpoint.load(tmp_path / "soft" / "best.safetensors")
    valid = load_dataset("manifest", data["soft"], valid=str(data["soft"])).valid
    targets = np.stack([target_vector(e, len(model.labels)) for e in valid])
    assert set(np.unique(targets)) == {np.float32(0.1), np.float32(0.8)}
    z = example_logits(model, valid, device="cpu").astype(np.float64)
    bce = np.mean(np.logaddexp(0, z) - targets * z)  # BCE on the logits, as training computes it
    assert soft["best"]["valid_loss"] == pytest.approx(bce, rel=1e-4)


def test_fold_all_runs_five_folds_and_reports_mean_and_std(data, tmp_path):
    result = run("finetune", "esc50", "-d", data["esc50"], "--recipe", data["recipe"], "--fold", "all",
                 "-o", tmp_path / "cv", "--device", "cpu")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["completed"] == [1, 2, 3, 4, 5] and summary["metric"] == "accuracy"
    scores = [summary["per_fold"][str(f)]["best"] for f in range(1, 6)]
    assert summary["best"]["mean"] == pytest.approx(sum(scores) / 5)
    assert "over folds [1, 2, 3, 4, 5]" in result.stderr and "epoch 1" in result.stderr
    assert sorted(p.name for p in (tmp_path / "cv").iterdir()) == [
        "cross_validation.json", "fold_1", "fold_2", "fold_3", "fold_4", "fold_5"]
    # As if killed in fold 4 before its first epoch ended and in fold 5 before its summary.
    for path in (tmp_path / "cv" / "fold_4").iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != "recipe.yaml":
            path.unlink()
    (tmp_path / "cv" / "fold_5" / "summary.json").unlink()
    again = run("finetune", "--resume", tmp_path / "cv", "--device", "cpu", "-q")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["best"] == summary["best"]
    assert (tmp_path / "cv" / "fold_4" / "checkpoints" / "epoch_001.safetensors").exists()


def test_flags_override_the_recipe(data, tmp_path):
    finetune(data, "esc50", data["esc50"], tmp_path / "run", "--fold", "3", "--epochs", "1",
             "--lr", "0.002", "--batch-size", "4", "--seed", "9", "--fstride", "12", "--tstride", "14",
             "--init", "none", "--set", "mixup=0.25", "--set", "model.depth=1", "--precision", "fp32")
    recipe = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert (recipe["lr"], recipe["batch_size"], recipe["seed"], recipe["stride"]) == (0.002, 4, 9, [12, 14])
    assert (recipe["mixup"], recipe["model"]["depth"], recipe["data"], recipe["lr_by_init"]) == (
        0.25, 1, {"fold": 3}, {})


def test_a_missing_imagenet_weights_file_fails_before_anything_is_written(data, tmp_path):
    result = run("finetune", "esc50", "-d", data["esc50"], "--init", "imagenet",
                 "--imagenet-weights", tmp_path / "missing.safetensors", "-o", tmp_path / "run", "-q")
    assert result.exit_code == 1 and "missing.safetensors: no such checkpoint file" in result.output
    assert not (tmp_path / "run").exists()


def test_audioset_init_offline_fails_clearly(data, tmp_path, monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setenv("ASTTAG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    result = run("finetune", "esc50", "-d", data["esc50"], "--recipe", data["recipe"],
                 "--init", "audioset", "-o", tmp_path / "run", "-q")
    assert result.exit_code == 1
    assert "cannot download MIT/ast-finetuned-audioset-10-10-0.4593" in result.output
    assert not (tmp_path / "run").exists()


def test_errors_are_precise(data, tmp_path):
    usage = run("finetune")
    assert usage.exit_code == 2 and "give a DATASET" in usage.output
    bad_key = run("finetune", "esc50", "-d", data["esc50"], "--set", "mixups=0.5")
    assert bad_key.exit_code == 2 and "unknown recipe key 'mixups'" in bad_key.output
    not_esc = run("finetune", "folder", "-d", data["folder"], "--fold", "all")
    assert not_esc.exit_code == 2 and "--fold all runs ESC-50's five folds" in not_esc.output
    no_data = run("finetune", "esc50", "--recipe", data["recipe"], "-o", tmp_path / "x")
    assert no_data.exit_code == 1 and "pass --data-dir" in no_data.output
    wrong_fold = run("finetune", "esc50", "-d", data["esc50"], "--recipe", data["recipe"],
                     "--fold", "7", "-o", tmp_path / "y")
    assert wrong_fold.exit_code == 1 and "fold 7 not found" in wrong_fold.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta").mkdir()
    (broken / "meta" / "esc50.csv").write_text("filename,fold,target,category\n1-1-A-0.wav,1,0,dog\n"
                                               "2-1-A-0.wav,2,0,dog\n")
    missing = run("finetune", "esc50", "-d", broken, "--recipe", data["recipe"], "-o", tmp_path / "z")
    assert missing.exit_code == 1 and "listed audio files are missing" in missing.output
    assert not any((tmp_path / name).exists() for name in ("x", "y", "z"))
    not_a_run = run("finetune", "--resume", tmp_path)
    assert not_a_run.exit_code == 1 and "not a training run directory" in not_a_run.output
    changed = run("train", "--resume", tmp_path, "--epochs", "3", "--lr", "0.1")
    assert changed.exit_code == 2 and "drop --epochs, --lr" in changed.output


def test_a_single_class_folder_is_refused(tmp_path):
    from training_fixtures import write_clip

    for i in range(10):  # enough that the recipe's validation fraction holds one out
        write_clip(tmp_path / "data" / "dog" / f"{i}.wav", "noise_burst", seed=i, seconds=0.3)
    result = CliRunner().invoke(app, ["finetune", "folder", "-d", str(tmp_path / "data"),
                                      "-o", str(tmp_path / "run"), "--init", "none"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'data'}: the training split has 1 class (dog); telling classes "
        "apart needs at least two")
    assert not (tmp_path / "run" / "checkpoints").exists()
