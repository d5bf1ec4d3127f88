"""`asttag evaluate`, `asttag ensemble evaluate|create` through the CLI, on generated audio."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.labels import LabelSet
from asttag.model import AST
from conftest import tiny_config, write_tone

# The data set has folders a, b and c; the models know a fourth class, d, with no clip.
MODEL_LABELS = LabelSet.from_names(["a", "b", "c", "d"], multi_label=False)
FREQUENCIES = {"a": 300.0, "b": 1200.0, "c": 3000.0}


def invoke(*args: str):
    from asttag.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: str):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def model_file(path: Path, seed: int, **config) -> Path:
    torch.manual_seed(seed)
    return checkpoint.save(AST(tiny_config(**config), labels=MODEL_LABELS), path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    for name, freq in FREQUENCIES.items():
        (data / name).mkdir(parents=True)
        for i in range(2):
            write_tone(data / name / f"{name}{i}.wav", seconds=0.7, freq=freq + 50 * i, seed=i)
    return {
        "data": data,
        "a": model_file(root / "a.safetensors", 0),
        "b": model_file(root / "b.safetensors", 1, stride=(12, 12)),
        "root": root,
    }


def results(stdout: str) -> dict[str, dict]:
    return {r["name"]: r["metrics"] for r in json.loads(stdout)["results"]}


def test_evaluate_prints_json_and_notes_classes_without_positives(files):
    result = ok("evaluate", "--model", files["a"], files["data"], "--format", "json")
    report = json.loads(result.stdout)
    assert report["split"] == "train" and report["data"] == str(files["data"])
    (only,) = report["results"]
    assert only["model"]["source"] == str(files["a"])
    metrics = only["metrics"]
    assert metrics["n_examples"] == 6 and metrics["n_classes_scored"] == 3
    assert metrics["excluded"] == [{"index": 3, "name": "d", "reason": "no positive example"}]
    assert 0 <= metrics["mAP"] <= 1 and "per_class" not in metrics
    assert "1 class(es) with no positive example left out of the means: d" in result.stderr


def test_evaluate_per_class_table(files):
    result = ok("evaluate", "-m", files["a"], files["data"], "--format", "table", "--per-class")
    assert "mAP" in result.stdout and "d-prime" in result.stdout
    assert "per class" in result.stdout and "3 of 4" in result.stdout


def test_evaluate_refuses_a_model_without_the_data_sets_classes(files, tmp_path):
    torch.manual_seed(0)
    other = checkpoint.save(AST(tiny_config()), tmp_path / "generic.safetensors")
    result = invoke("evaluate", "-m", other, files["data"])
    assert result.exit_code == 1 and result.stdout == ""
    assert "3 of the data set's 3 classes are not among the model's 4" in result.stderr


def test_saved_predictions_ensemble_without_running_models(files, tmp_path):
    saved = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.npz"
        ok("evaluate", "-m", files[name], files["data"], "-f", "json", "--save-predictions", path)
        saved.append(path)
    from_files = results(ok("ensemble", "evaluate", "--from-predictions", *saved,
                            "-f", "json").stdout)
    from_models = results(ok("ensemble", "evaluate", files["a"], files["b"], files["data"],
                             "-f", "json").stdout)
    assert list(from_files) == [str(files["a"]), str(files["b"]), "ensemble"]
    assert from_files == from_models


def test_an_ensemble_of_copies_scores_exactly_like_its_model(files):
    report = results(ok("ensemble", "evaluate", files["a"], files["a"], files["data"], "-f", "json",
                        "--per-class").stdout)
    alone = results(ok("evaluate", "-m", files["a"], files["data"], "-f", "json",
                       "--per-class").stdout)[str(files["a"])]
    assert report["ensemble"] == alone


def test_a_bundle_evaluates_like_the_ensemble_of_its_members(files, tmp_path):
    bundle = tmp_path / "ens.safetensors"
    created = ok("ensemble", "create", files["a"], files["b"], "-o", bundle)
    digest, path = created.stdout.split()
    assert Path(path) == bundle and len(digest) == 64
    by_bundle = results(ok("evaluate", "-m", bundle, files["data"], "-f", "json").stdout)
    by_bundle = by_bundle[str(bundle)]
    by_members = results(ok("ensemble", "evaluate", files["a"], files["b"], files["data"],
                            "-f", "json").stdout)["ensemble"]
    for key in ("mAP", "mean_auc", "accuracy"):
        assert by_bundle[key] == pytest.approx(by_members[key], abs=1e-6)
    again = invoke("ensemble", "create", files["a"], "-o", bundle)
    assert again.exit_code == 2 and "--force" in again.stderr


def test_ensemble_create_refuses_members_with_other_labels(files, tmp_path):
    torch.manual_seed(0)
    other = checkpoint.save(AST(tiny_config()), tmp_path / "generic.safetensors")
    result = invoke("ensemble", "create", files["a"], other, "-o", tmp_path / "x.safetensors")
    assert result.exit_code == 1
    assert "member 1 does not fit member 0" in result.stderr and "label ids differ" in result.stderr
    assert not (tmp_path / "x.safetensors").exists()


def tag_rows(model: Path, audio: list[Path]) -> list[dict]:
    result = ok("tag", "--model", model, *audio, "--format", "csv", "--quiet", "--top", "4")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 4 * len(audio) and "score" in rows[0]
    return rows


def test_a_bundle_tags_files_through_asttag_tag_like_any_model(files, tmp_path):
    bundle = tmp_path / "copies.safetensors"
    ok("ensemble", "create", files["a"], files["a"], "-o", bundle)
    audio = sorted(files["data"].glob("*/*.wav"))[:3]
    assert tag_rows(bundle, audio) == tag_rows(files["a"], audio)


def test_a_bundles_members_count_one_by_one_in_ensemble_evaluate(files, tmp_path):
    bundle = tmp_path / "ab.safetensors"
    ok("ensemble", "create", files["a"], files["b"], "-o", bundle)
    nested = results(ok("ensemble", "evaluate", bundle, files["a"], files["data"],
                        "-f", "json").stdout)
    flat = results(ok("ensemble", "evaluate", files["a"], files["b"], files["a"], files["data"],
                      "-f", "json").stdout)
    assert list(nested) == [f"{bundle} member 0", f"{bundle} member 1", str(files["a"]),
                            "ensemble"]
    assert nested["ensemble"] == flat["ensemble"]
