"""The stamp of self-describing files: checkpoints, bundles and predictions written and checked
one way."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from asttag import checkpoint
from asttag._version import __version__
from asttag.ensemble import Ensemble, read_bundle_metadata, save_bundle
from asttag.evaluation import EvaluationError, Predictions, load_predictions, save_predictions
from asttag.labels import LabelSet
from conftest import tiny_model


def _predictions() -> Predictions:
    eye = np.eye(2, dtype=np.float32)
    return Predictions(eye, eye, LabelSet.from_names(["a", "b"]), ("p", "q"), {"source": "s"})


def _restamp(path, version: str) -> None:
    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (no dict)
    save_file(tensors, str(path), metadata={**metadata, "format_version": version})


def test_every_kind_of_file_opens_with_the_same_stamp(tmp_path):
    model = tiny_model()
    files = [checkpoint.save(model, tmp_path / "one.safetensors"),
             save_bundle(Ensemble([model]), tmp_path / "two.safetensors")]
    stamps = []
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            stamps.append({k: f.metadata()[k] for k in ("format", "format_version", "asttag_version")})
    with np.load(save_predictions(_predictions(), tmp_path / "p.npz")) as data:
        meta = json.loads(str(data["meta"]))
    assert list(meta)[:3] == ["format", "format_version", "asttag_version"]
    stamps.append({k: str(meta[k]) for k in ("format", "format_version", "asttag_version")})
    assert [s["format"] for s in stamps] == ["asttag", "asttag-ensemble", "asttag-predictions"]
    assert {(s["format_version"], s["asttag_version"]) for s in stamps} == {("1", __version__)}


def test_a_newer_format_is_refused_in_the_same_words_for_every_kind(tmp_path):
    model = tiny_model()
    one = checkpoint.save(model, tmp_path / "one.safetensors")
    two = save_bundle(Ensemble([model]), tmp_path / "two.safetensors")
    for path in (one, two):
        _restamp(path, "9")
    with pytest.raises(checkpoint.CheckpointError, match="an asttag checkpoint written by a newer asttag "
                       r"\(format 9\); upgrade asttag to read it"):
        checkpoint.read_metadata(one)
    with pytest.raises(checkpoint.CheckpointError, match="an asttag ensemble bundle written by a newer "
                       r"asttag \(format 9\); upgrade asttag to read it"):
        read_bundle_metadata(two)
    path = save_predictions(_predictions(), tmp_path / "p.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["meta"] = np.array(json.dumps({**json.loads(str(arrays["meta"])), "format_version": 9}))
    np.savez_compressed(path, **arrays)
    with pytest.raises(EvaluationError, match=r"p.npz: asttag predictions written by a newer asttag "
                       r"\(format 9\); upgrade asttag to read it"):
        load_predictions(path)
    arrays["meta"] = np.array(json.dumps({"format": "other"}))
    np.savez_compressed(path, **arrays)
    with pytest.raises(EvaluationError, match="p.npz: not asttag predictions"):
        load_predictions(path)
