"""The linear probe: only a new head learnt on frozen embeddings; a model like any other."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from asttag import checkpoint
from asttag.cli import app
from asttag.datasets import DatasetSplits, Example, load_dataset
from asttag.labels import LabelSet
from asttag.probe import ProbeError, train_probe, with_head
from asttag.tagger import Tagger
from test_tagger import tiny_model, write_wave


def tone_folder(root, *, per_class=4):
    """Three classes of tones a tiny random model tells apart: low, middle and high pitch."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    for name, (low, high) in {"low": (150, 300), "mid": (900, 1400), "high": (4000, 6000)}.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            wave = 0.5 * np.sin(2 * np.pi * rng.uniform(low, high) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(str(root / name / f"{i}.wav"), wave.astype(np.float32), 16000)
    return root


def test_a_probe_learns_the_classes_and_keeps_the_encoder(tmp_path):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    splits = load_dataset("folder", tone_folder(tmp_path / "data"), valid_fraction=0.25)
    result = train_probe(model, splits, device="cpu", c=100.0)
    assert result.train_metrics.accuracy == 1.0 and result.valid_metrics.accuracy == 1.0
    assert result.train_windows == len(splits.train)  # clips of 0.5 s: one window each
    probe = result.model
    assert probe.labels == splits.labels and probe.config.num_classes == 3
    for key, value in probe.state_dict().items():  # everything but the linear head is frozen
        if not key.startswith("head."):
            torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # caller's model untouched


def test_the_saved_probe_tags_as_it_was_scored(tmp_path):
    splits = load_dataset("folder", tone_folder(tmp_path / "data"), valid_fraction=0.25)
    result = train_probe(tiny_model(), splits, device="cpu")
    path = checkpoint.save(result.model, tmp_path / "probe.safetensors")
    tagger = Tagger(checkpoint.load(path), device="cpu", top_k=3)
    clips = np.stack([tagger.tag(e.path).clip_scores for e in splits.valid])
    targets = np.stack([np.eye(3)[e.labels[0]] for e in splits.valid])
    from asttag.metrics import evaluate_scores

    assert evaluate_scores(clips, targets).accuracy == result.valid_metrics.accuracy


def test_a_head_from_weights_gives_the_logits_of_those_weights():
    model = tiny_model()
    rng = np.random.default_rng(0)
    weight, bias = rng.standard_normal((2, 32)), rng.standard_normal(2)
    probe = with_head(model, weight, bias, LabelSet.from_names(["a", "b"], multi_label=False))
    x = torch.randn(3, model.config.target_length, model.config.num_mel_bins)
    with torch.no_grad():
        expected = model.head_norm(model.embed(x)) @ torch.as_tensor(weight).float().T + torch.as_tensor(bias).float()
        torch.testing.assert_close(probe(x), expected, rtol=1e-5, atol=1e-5)


def test_two_classes_and_multi_label_data(tmp_path):
    paths = [write_wave(tmp_path / f"{i}.wav", 0.5, seed=i) for i in range(6)]
    two = DatasetSplits(LabelSet.from_names(["a", "b"], multi_label=False),
                        [Example(p, (i % 2,)) for i, p in enumerate(paths)], [])
    assert train_probe(tiny_model(), two, device="cpu", c=1e4).train_metrics.accuracy == 1.0
    tags = DatasetSplits(LabelSet.from_names(["x", "y", "z"]),
                         [Example(p, (0,) if i < 3 else (1, 2)) for i, p in enumerate(paths)], [])
    result = train_probe(tiny_model(), tags, device="cpu", c=1e4)
    assert result.model.labels.multi_label and result.train_metrics.mAP == pytest.approx(1.0)


def test_data_a_probe_cannot_learn_is_refused_with_the_reason(tmp_path):
    paths = [write_wave(tmp_path / f"{i}.wav", 0.5, seed=i) for i in range(3)]
    labels = LabelSet.from_names(["a", "b", "c"], multi_label=False)
    with pytest.raises(ProbeError, match="class 'c' has no training clip"):
        train_probe(tiny_model(), DatasetSplits(labels, [Example(p, (i % 2,)) for i, p in enumerate(paths)], []),
                    device="cpu")
    tags = LabelSet.from_names(["x", "y"])
    with pytest.raises(ProbeError, match="class 'x': every training clip has it"):
        train_probe(tiny_model(), DatasetSplits(tags, [Example(p, (0,)) for p in paths], []), device="cpu")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    with pytest.raises(ProbeError, match=f"{broken}: "):
        train_probe(tiny_model(), DatasetSplits(labels, [Example(broken, (0,))], []), device="cpu")


def test_cli_writes_the_probe_and_prints_its_summary(tmp_path):
    data = tone_folder(tmp_path / "data")
    model = checkpoint.save(tiny_model(), tmp_path / "tiny.safetensors")
    out = tmp_path / "probe.safetensors"
    args = ["probe", str(data), "-m", str(model), "-o", str(out), "-D", "valid_fraction=0.25",
            "--device", "cpu", "--c", "100"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["valid"]["accuracy"] == 1.0 and summary["classes"] == 3
    assert "valid accuracy 1.000" in result.stderr
    assert checkpoint.read_metadata(out)["extra"]["probe"] == summary
    assert CliRunner().invoke(app, args).exit_code == 2  # exists: --force to overwrite
    bad = CliRunner().invoke(app, [*args[:-1], "0", "--force"])
    assert bad.exit_code == 1 and "c must be above 0" in bad.stderr
