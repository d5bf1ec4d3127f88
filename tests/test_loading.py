"""Loading whatever a path holds: one model in any checkpoint format, or an ensemble bundle."""

from __future__ import annotations

import pytest
import torch

from asttag import checkpoint, loading
from asttag.ensemble import Ensemble, save_bundle
from asttag.model import AST
from conftest import tiny_model


def test_a_model_file_and_a_bundle_are_told_apart_and_loaded_as_what_they_are(tmp_path):
    model, other = tiny_model(0), tiny_model(1)
    single = checkpoint.save(model, tmp_path / "one.safetensors")
    bundle = save_bundle(Ensemble([model, other]), tmp_path / "two.safetensors")
    assert loading.detect_format(single) == "asttag"
    assert loading.detect_format(bundle) == "ensemble"
    x = torch.randn(2, model.features.target_length, model.features.num_mel_bins)
    loaded = loading.load(single)
    assert isinstance(loaded, AST) and torch.equal(loaded.predict(x), model.predict(x))
    assert isinstance(loading.load(bundle), Ensemble)


def test_the_checkpoint_loader_refuses_a_bundle_it_cannot_hold(tmp_path):
    bundle = save_bundle(Ensemble([tiny_model(0)]), tmp_path / "ens.safetensors")
    with pytest.raises(checkpoint.CheckpointError, match="ens.safetensors: not an asttag"):
        checkpoint.load(bundle)


def test_a_missing_path_is_named(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="missing.safetensors: no such file"):
        loading.load(tmp_path / "missing.safetensors")
