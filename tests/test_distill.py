"""Distillation: teacher targets (YAMNet-style frame teachers and asttag-model teachers), soft
manifests and `asttag distill`, with a fake teacher standing in for YAMNet. Nothing is
downloaded. The default model's rebuild recipe is tested in test_default_model.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from fake_teacher import DOG, MUSIC, RATE, SPEECH, FakeYamnet, tone
from typer.testing import CliRunner

from asttag import yamnet
from asttag.checkpoint import save
from asttag.cli import app
from asttag.distill import (
    DistillError,
    ModelTeacher,
    SoftTarget,
    cut_windows,
    soft_record,
    teacher_scores,
    window_scores,
    write_soft_manifest,
)
from asttag.ensemble import Ensemble
from asttag.errors import parameter_of
from asttag.features import FeatureConfig, convert_input
from asttag.labels import LabelSet, audioset
from asttag.model import AST
from conftest import tiny_config, write_tone

# --------------------------------------------------------------------------- target mapping


def test_window_scores_take_the_max_over_frames_and_leave_missing_classes_without_signal():
    labels = audioset()
    scores = window_scores(FakeYamnet(), tone(3.0, 0.5))
    frames = yamnet.frame_count(3 * RATE)
    assert scores.shape == (527,)
    assert scores[labels.index(DOG)] == pytest.approx((frames - 1) / 10)  # the last frame's
    assert scores[labels.index(SPEECH)] == pytest.approx(0.9)
    missing = [labels.index(name) for name in yamnet.MISSING_AUDIOSET_CLASSES]
    assert np.isnan(scores[missing]).all()
    assert np.isfinite(np.delete(scores, missing)).all()


def test_soft_manifest_round_trip_reads_missing_and_tiny_scores_as_zero(tmp_path):
    labels = audioset()
    clip = tmp_path / "w.flac"
    sf.write(str(clip), tone(1.0, 0.5), RATE)
    scores = window_scores(FakeYamnet(), tone(1.0, 0.5))
    scores[labels.index("Bark")] = 1e-6  # under MIN_SCORE
    manifest = write_soft_manifest([SoftTarget(clip, scores)], tmp_path / "m.jsonl", labels=labels)
    record = json.loads(manifest.read_text().splitlines()[0])
    assert record["path"] == "w.flac"
    assert "/m/09x0r" in record["scores"]  # Speech, by AudioSet id
    assert not set(record["scores"]) & {labels.ids[labels.index(n)] for n in yamnet.MISSING_AUDIOSET_CLASSES}
    assert (tmp_path / "labels.csv").exists()

    from asttag.datasets import load_dataset

    splits = load_dataset("manifest", manifest, label_file=tmp_path / "labels.csv")
    soft = splits.train[0].soft
    assert splits.labels == labels and soft.shape == (527,)
    expected = np.nan_to_num(np.round(scores, 4))
    expected[labels.index("Bark")] = 0.0
    np.testing.assert_allclose(soft, expected, atol=1e-6)
    assert splits.train[0].path == clip


def test_soft_record_refuses_scores_of_another_label_set(tmp_path):
    with pytest.raises(DistillError, match="3 scores for 527 labels"):
        soft_record(SoftTarget(tmp_path / "x.flac", np.zeros(3)), audioset(), root=tmp_path)


@pytest.mark.parametrize(("samples", "lengths"), [(25, [10, 10, 5]), (23, [10, 10]), (4, [4]), (20, [10, 10])])
def test_cut_windows_keeps_a_short_tail_only_when_it_is_long_enough(samples, lengths):
    pieces = cut_windows(np.arange(samples), window_samples=10, min_samples=5)
    assert [len(p) for p in pieces] == lengths
    assert np.concatenate(pieces).tolist() == list(range(sum(lengths)))


def test_teacher_scores_of_a_frame_teacher_are_on_audioset(tmp_path):
    windows = [(tmp_path / "a.flac", tone(1.0, 0.5)), (tmp_path / "b.flac", tone(2.0, 0.1))]
    labels, scores = teacher_scores(FakeYamnet(), windows)
    assert labels == audioset() and scores.shape == (2, 527)
    assert scores[1, labels.index(MUSIC)] == pytest.approx(0.6)


# --------------------------------------------------------------------------- model teachers


def _teacher(**overrides) -> AST:
    torch.manual_seed(0)
    config = tiny_config(num_classes=4, num_mel_bins=32, target_length=64, **overrides)
    labels = LabelSet(("a", "b", "c", "d"), ("/m/a", "/m/b", "/m/c", "/m/d"))
    return AST(config, features=FeatureConfig(num_mel_bins=32, target_length=64, mean=-5.0, std=3.0),
               labels=labels).eval()


def test_model_teacher_scores_the_students_input_in_its_own_normalisation_and_label_order():
    teacher = _teacher()
    student_features = FeatureConfig(num_mel_bins=32, target_length=48, mean=-4.0, std=4.5)
    student_labels = LabelSet(("c", "a"), ("/m/c", "/m/a"))
    hook = ModelTeacher(teacher, features=student_features, labels=student_labels)
    x = torch.randn(3, 48, 32, requires_grad=False)
    targets = hook(x, torch.zeros(3, 2))
    with torch.no_grad():
        expected = teacher.predict(convert_input(x, student_features, teacher.features))[:, [2, 0]]
    torch.testing.assert_close(targets, expected)
    # The targets take part in a loss with gradients: they must not be inference tensors.
    logits = torch.zeros(3, 2, requires_grad=True)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, targets).backward()
    assert logits.grad is not None


def test_an_ensemble_bundle_teaches_like_a_model():
    ensemble = Ensemble([_teacher(), _teacher(stride=(12, 12))])
    hook = ModelTeacher(ensemble, features=ensemble.features, labels=ensemble.labels)
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(hook(x, torch.zeros(2, 4)), ensemble.predict(x))


def test_model_teacher_refuses_other_mel_bins_and_unknown_classes():
    teacher = _teacher()
    with pytest.raises(DistillError, match="teacher takes 32 mel bins") as caught:
        ModelTeacher(teacher, features=FeatureConfig(num_mel_bins=64, target_length=64), labels=teacher.labels)
    assert "--" not in str(caught.value) and parameter_of(caught.value) == "num_mel_bins"
    with pytest.raises(DistillError, match="does not know.*'e'"):
        ModelTeacher(teacher, features=teacher.features, labels=LabelSet(("a", "e"), ("/m/a", "/m/e")))


def test_model_teacher_targets_replace_the_datas_in_training(tmp_path):
    """Through the engine's TargetSource hook, a student trained on clips whose manifest says
    nothing (all scores 0) learns the teacher's scores."""
    from asttag.recipes import Recipe
    from asttag.training import train

    teacher = _teacher()
    clips = [write_tone(tmp_path / f"{i}.wav", freq=300 + 400 * i, seconds=0.7) for i in range(4)]
    lines = [json.dumps({"path": c.name, "scores": {}}) for c in clips]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.csv").write_text(teacher.labels.to_csv())
    recipe = Recipe(name="t", dataset="manifest", epochs=1, batch_size=4, lr=1e-3,
                    data_dir=str(tmp_path / "m.jsonl"), data={"label_file": str(tmp_path / "labels.csv")},
                    size="tiny224", model={"embed_dim": 32, "depth": 1, "num_heads": 2},
                    stride=(16, 16), num_mel_bins=32, target_length=64)
    seen = []

    class Spy(ModelTeacher):
        def __call__(self, inputs, targets):
            out = super().__call__(inputs, targets)
            seen.append((targets.clone(), out))
            return out

    features = FeatureConfig(num_mel_bins=32, target_length=64, mean=recipe.norm_mean, std=recipe.norm_std)
    train(recipe, tmp_path / "run", targets=Spy(teacher, features=features, labels=teacher.labels))
    assert seen and all(float(data.abs().sum()) == 0 for data, _ in seen)
    assert all(float(out.min()) > 0 for _, out in seen)


# --------------------------------------------------------------------------- asttag distill


def _recipe_file(path: Path, **overrides) -> Path:
    recipe = {"name": "tiny-student", "dataset": "manifest", "init": "none", "size": "tiny224",
              "model": {"embed_dim": 32, "depth": 1, "num_heads": 2}, "stride": [16, 16],
              "num_mel_bins": 32, "target_length": 64, "epochs": 1, "batch_size": 4, "lr": 1e-3,
              "metric": "mAP", **overrides}
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_distill_command_trains_a_student_of_a_model_teacher_and_resumes(tmp_path):
    teacher = save(_teacher(), tmp_path / "teacher.safetensors")
    data = tmp_path / "audio"
    data.mkdir()
    for i in range(5):
        write_tone(data / f"{i}.wav", freq=300 + 500 * i, seconds=1.5 if i else 0.3)
    run = tmp_path / "run"
    runner = CliRunner()
    args = ["distill", str(data), "--teacher", str(teacher), "--recipe", str(_recipe_file(tmp_path / "r.yaml")),
            "--out", str(run), "--device", "cpu", "--quiet", "-D", "valid_fraction=0.3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["epochs"] == 1
    # 1.5 s recordings at 0.64 s windows: two windows each (the 0.22 s tail is dropped).
    lines = (run / "windows" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 2 + 1
    assert set(json.loads(lines[0])["scores"]) <= {"/m/a", "/m/b", "/m/c", "/m/d"}

    from asttag.hub import load_model

    student = load_model(str(run / "best.safetensors"))
    assert student.labels == _teacher().labels and student.config.depth == 1

    more = runner.invoke(app, ["distill", "--resume", str(run), "--device", "cpu", "--quiet"])
    assert more.exit_code == 0, more.output
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already holds a distillation" in again.output


def test_distill_command_says_which_mel_bins_a_model_teacher_needs(tmp_path):
    teacher = save(_teacher(), tmp_path / "teacher.safetensors")
    write_tone(tmp_path / "a.wav")
    result = CliRunner().invoke(app, [
        "distill", str(tmp_path / "a.wav"), "--teacher", str(teacher), "--mel-bins", "64",
        "--recipe", str(_recipe_file(tmp_path / "r.yaml")), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 1
    assert "the teacher takes 32 mel bins" in result.output and "(pass --mel-bins)" in result.output
    assert not (tmp_path / "run" / "windows").exists()  # refused before any work


def test_distill_command_needs_data_and_a_teacher():
    result = CliRunner().invoke(app, ["distill"])
    assert result.exit_code == 2 and "--teacher" in result.output


def test_distill_resume_refuses_options_it_would_ignore(tmp_path):
    result = CliRunner().invoke(app, ["distill", "--resume", str(tmp_path), "--epochs", "3",
                                      "--teacher", "default", "--device", "cpu"])
    assert result.exit_code == 2 and "drop --epochs, --teacher" in result.output
