import json
import os
import pickle

import pytest
import torch

from asttag import checkpoint
from asttag.checkpoint import CheckpointError
from asttag.features import ESC50_STATS, FeatureConfig
from asttag.labels import LabelSet, audioset, esc50, read_label_file
from asttag.model import AST
from conftest import tiny_config, tiny_model


def hf_model(seed=0, **overrides):
    from transformers import ASTConfig as HFConfig
    from transformers import ASTForAudioClassification

    torch.manual_seed(seed)
    base = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                max_length=100, num_mel_bins=32, frequency_stride=10, time_stride=10,
                patch_size=16, num_labels=5)
    model = ASTForAudioClassification(HFConfig(**{**base, **overrides}))
    # Random LayerNorm affine parameters, so a mix-up of any two LayerNorms would show.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
    return model.eval()


def hf_logits(model, x):
    with torch.no_grad():
        return model(x).logits


VARIANTS = [
    {},
    {"frequency_stride": 12, "time_stride": 12},
    {"frequency_stride": 16, "time_stride": 16},
    {"frequency_stride": 8, "time_stride": 14, "max_length": 128},
    {"num_mel_bins": 48, "max_length": 64, "patch_size": 8},
]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_transformers_parity_both_ways(tmp_path, overrides):
    from transformers import ASTForAudioClassification

    reference = hf_model(**overrides)
    reference.save_pretrained(tmp_path / "hf")
    model = checkpoint.load(tmp_path / "hf").eval()
    cfg = reference.config
    x = torch.randn(2, cfg.max_length, cfg.num_mel_bins)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf_logits(reference, x), atol=1e-4, rtol=0)
    assert model.config.norm_eps == model.config.head_eps == cfg.layer_norm_eps

    checkpoint.to_transformers(model, tmp_path / "back")
    again = ASTForAudioClassification.from_pretrained(tmp_path / "back").eval()
    torch.testing.assert_close(hf_logits(again, x), hf_logits(reference, x), atol=1e-4, rtol=0)


def official_state(model: AST) -> dict:
    """The official DataParallel key names and shapes, built from an asttag model."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("head_norm."):
            out["module.mlp_head.0." + key.split(".", 1)[1]] = value
        elif key.startswith("head."):
            out["module.mlp_head.1." + key.split(".", 1)[1]] = value
        elif key.startswith("patch_proj."):
            out["module.v.patch_embed.proj." + key.split(".", 1)[1]] = value
        else:
            out["module.v." + key] = value
    dim = model.config.embed_dim
    out["module.v.head.weight"] = torch.zeros(1000, dim)  # unused DeiT heads, as released
    out["module.v.head.bias"] = torch.zeros(1000)
    out["module.v.head_dist.weight"] = torch.zeros(1000, dim)
    out["module.v.head_dist.bias"] = torch.zeros(1000)
    return out


def test_official_state_dict_matches_transformers(tmp_path):
    # The original code's LayerNorms use eps 1e-6 (encoder) and 1e-5 (head); give the
    # transformers twin the same values so that the comparison is like for like.
    # Official files do not store the head count: asttag takes DeiT's head width of 64.
    reference = hf_model(layer_norm_eps=1e-6, hidden_size=128, intermediate_size=256)
    reference.save_pretrained(tmp_path / "hf")
    via_hf = checkpoint.load(tmp_path / "hf")
    reference.classifier.layernorm.eps = 1e-5
    path = tmp_path / "official.pth"
    torch.save(official_state(via_hf), path)
    model = checkpoint.load(path, num_mel_bins=32, target_length=100)
    x = torch.randn(2, 100, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf_logits(reference, x), atol=1e-4, rtol=0)
    assert checkpoint.checkpoint_format(path) == "official"


def test_official_base_layout_is_inferred_with_labels_and_stats():
    # The released audioset_10_10 layout: pos_embed (1, 1214, D), 527 classes.
    model = AST(tiny_config(num_classes=527, num_mel_bins=128, target_length=1024))
    loaded = checkpoint.from_official(official_state(model), source="audioset_10_10_0.4593.pth")
    assert loaded.config.grid == (12, 101) and loaded.config.target_length == 1024
    assert loaded.labels == audioset()
    assert (loaded.config.norm_eps, loaded.config.head_eps) == (1e-6, 1e-5)
    esc = AST(tiny_config(num_classes=50, num_mel_bins=128, target_length=512, stride=(12, 12)))
    loaded = checkpoint.from_official(official_state(esc), source="esc50_12_12_0.95.pth")
    assert loaded.config.stride == (12, 12) and loaded.config.target_length == 512
    assert (loaded.features.mean, loaded.features.std) == ESC50_STATS


def test_each_kind_of_bad_key_is_named():
    model = tiny_model()
    good = official_state(model)

    missing = {k: v for k, v in good.items() if "blocks.1.mlp.fc2.bias" not in k}
    with pytest.raises(CheckpointError, match=r"missing keys: blocks\.1\.mlp\.fc2\.bias"):
        checkpoint.from_official(missing, num_mel_bins=32, stride=(10, 10), target_length=64)

    extra = {**good, "module.v.blocks.0.attn.extra_scale": torch.ones(1)}
    with pytest.raises(CheckpointError, match=r"unexpected keys: blocks\.0\.attn\.extra_scale"):
        checkpoint.from_official(extra, num_mel_bins=32, stride=(10, 10), target_length=64)

    bad = dict(good)
    bad["module.v.blocks.0.attn.qkv.weight"] = torch.zeros(96, 31)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.attn\.qkv\.weight: checkpoint \(96, 31\) vs model \(96, 32\)"):
        checkpoint.from_official(bad, num_mel_bins=32, stride=(10, 10), target_length=64)


def test_pos_embed_that_fits_no_layout_says_so():
    state = official_state(tiny_model())
    with pytest.raises(CheckpointError, match=r"holds 10 patches, which fits no stride of 10/10 at 48 mel bins; give the mel bins"):
        checkpoint.from_official(state, num_mel_bins=48, stride=(10, 10))


def official_tiny_16_16():
    """The issue's file: a tiny 16/16 model on 288 frames, 35 classes (8 x 18 = 144 patches)."""
    return official_state(AST(tiny_config(num_classes=35, num_mel_bins=128, target_length=288,
                                          stride=(16, 16), depth=1)))


def test_a_grid_that_more_than_one_layout_fits_is_refused_with_the_candidates():
    # 144 patches are also 12 x 12 (10/10 on 128 frames) and 9 x 16 (14/14 on 226-239 frames):
    # taking the first fit used to rebuild this model as 10/10 on 128 frames, which tags nonsense.
    with pytest.raises(checkpoint.AmbiguousLayout) as caught:
        checkpoint.from_official(official_tiny_16_16(), source="mymodel.pth")
    assert caught.value.candidates == ["stride 10/10 with 128 frames",
                                       "stride 14/14 with any of 226-239 frames",
                                       "stride 16/16 with any of 288-303 frames"]
    # The stride alone leaves 288-303 frames open; a length that is no published one is refused.
    with pytest.raises(checkpoint.AmbiguousLayout, match="stride 16/16 with any of 288-303 frames"):
        checkpoint.from_official(official_tiny_16_16(), source="mymodel.pth", stride=(16, 16))
    loaded = checkpoint.from_official(official_tiny_16_16(), source="mymodel.pth", stride=(16, 16),
                                      target_length=288)
    assert loaded.config.grid == (8, 18) and loaded.features.target_length == 288


def test_what_was_inferred_is_said(caplog):
    model = AST(tiny_config(num_classes=527, num_mel_bins=128, target_length=1024, depth=1))
    with caplog.at_level("WARNING", logger="asttag"):
        checkpoint.from_official(official_state(model), source="audioset_10_10_0.4593.pth")
    (said,) = [r.getMessage() for r in caplog.records]
    assert said == ("audioset_10_10_0.4593.pth: stride 10/10 (from the file name); input length "
                    "1024 frames (the only published length that fits); 527 classes taken as "
                    "AudioSet labels; AudioSet normalisation statistics; multi-label (sigmoid) "
                    "scores")
    caplog.clear()
    with caplog.at_level("WARNING", logger="asttag"):
        checkpoint.from_official(official_state(model), source="x.pth", stride=(10, 10),
                                 target_length=1024, labels=audioset(), mean=0.0, std=1.0,
                                 multi_label=True)
    assert caplog.records == []


def test_mel_bins_labels_statistics_and_scoring_can_be_given(tmp_path):
    fifty = AST(tiny_config(num_classes=50, num_mel_bins=64, target_length=512, depth=1))
    state = official_state(fifty)
    with pytest.raises(CheckpointError, match="at 128 mel bins; give the mel bins"):
        checkpoint.from_official(state, source="esc50_10_10_0.9.pth")
    names = LabelSet.from_names([f"sound {i}" for i in range(50)])
    (tmp_path / "labels.csv").write_text(names.to_csv())
    labels = read_label_file(tmp_path / "labels.csv")
    loaded = checkpoint.from_official(state, source="esc50_10_10_0.9.pth", num_mel_bins=64,
                                      labels=labels, mean=-5.0, std=3.0, multi_label=True)
    assert loaded.config.grid == (5, 50) and loaded.features.num_mel_bins == 64
    assert loaded.labels.names == names.names and loaded.labels.multi_label
    assert (loaded.features.mean, loaded.features.std) == (-5.0, 3.0)
    # By head size alone, 50 classes are ESC-50's, single-label, with ESC-50's statistics.
    guessed = checkpoint.from_official(state, source="esc50_10_10_0.9.pth", num_mel_bins=64)
    assert guessed.labels == esc50() and not guessed.labels.multi_label
    assert (guessed.features.mean, guessed.features.std) == ESC50_STATS
    with pytest.raises(CheckpointError, match="3 labels given for a head of 50 classes"):
        checkpoint.from_official(state, source="esc50_10_10_0.9.pth", num_mel_bins=64,
                                 labels=LabelSet.from_names(["a", "b", "c"]))


def test_asttag_round_trip_is_self_describing(tmp_path):
    labels = LabelSet(("Dog", "Cat, domestic", "Bell", "Car"), ("/m/a", "/m/b", "/m/c", "/m/d"))
    features = FeatureConfig(num_mel_bins=32, target_length=64, mean=-5.0, std=3.0)
    model = AST(tiny_config(norm_eps=1e-12, head_eps=1e-7), features=features, labels=labels).eval()
    path = checkpoint.save(model, tmp_path / "m.safetensors", extra={"epoch": 3})
    loaded = checkpoint.load(path)
    assert (loaded.config, loaded.features, loaded.labels) == (model.config, features, labels)
    assert loaded.extra == {"epoch": 3}
    x = torch.randn(1, 64, 32)
    assert torch.equal(loaded(x), model(x))
    assert checkpoint.read_metadata(path)["config"]["norm_eps"] == 1e-12
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    import safetensors.torch

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tiny_model(), tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# torch warns that the crafted file uses another pickle protocol before refusing it.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    Payload.marker = marker
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"module.v.cls_token": Payload()}, f)
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.load(path)
    assert not marker.exists()
    torch.save({"weights": torch.ones(1), "payload": Payload()}, tmp_path / "evil2.pth")
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.read_tensors(tmp_path / "evil2.pth")
    assert not marker.exists()


def test_unknown_files_and_directories_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.load(tmp_path / "missing.safetensors")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match="not a transformers model"):
        checkpoint.load(tmp_path / "empty_dir")
    torch.save({"foo": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an asttag, official AST or transformers"):
        checkpoint.load(tmp_path / "other.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable"):
        checkpoint.load(tmp_path / "junk.safetensors")


def test_transformers_labels_map_back_to_audioset_ids(tmp_path):
    model = AST(tiny_config(num_classes=527), labels=audioset())
    checkpoint.to_transformers(model, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["id2label"]["0"] == "Speech"
    assert checkpoint.load(tmp_path / "hf").labels == audioset()
    with pytest.raises(FileExistsError):
        checkpoint.to_transformers(model, tmp_path / "hf")


def test_a_loaded_model_computes_bit_for_bit_like_the_saved_one(tmp_path):
    # safetensors hands out views at arbitrary offsets of the file's buffer; the CPU's matrix
    # kernels round differently on unaligned weights (2e-8 here before the fix), so a resumed
    # run's validation loss differed from an uninterrupted run's.
    model = tiny_model(embed_dim=64, num_mel_bins=64, target_length=100)
    loaded = checkpoint.load(checkpoint.save(model, tmp_path / "m.safetensors"))
    assert all(p.data_ptr() % 64 == 0 for p in loaded.parameters())
    x = torch.randn(3, 100, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_loading_fills_an_unallocated_model_and_computes_in_fp32(tmp_path):
    from safetensors.torch import save_file

    model = tiny_model()
    path = checkpoint.save(model, tmp_path / "m.safetensors")
    meta = checkpoint.read_metadata(path)
    # The same checkpoint with fp16 weights, as the embedded default model is stored.
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw_meta = f.metadata()
    half = {k: v.half() for k, v in checkpoint.read_tensors(path).items()}
    save_file(half, str(tmp_path / "half.safetensors"), metadata=raw_meta)
    for source in (path, tmp_path / "half.safetensors"):
        loaded = checkpoint.load(source)
        assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in loaded.parameters())
    assert meta["config"]["embed_dim"] == 32
    x = torch.randn(1, 64, 32)
    torch.testing.assert_close(checkpoint.load(tmp_path / "half.safetensors")(x), model(x),
                               atol=5e-3, rtol=0)


# --------------------------------------------------------------------------- malformed files


def _rewritten(path, tmp_path, *, section=None, field=None, value=None, raw=None, tensors=None):
    """A copy of the checkpoint at `path` with one metadata field (or raw header key) changed."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (no dict)
    if section is not None:
        data = json.loads(meta[section])
        data[field] = value
        meta[section] = json.dumps(data)
    meta.update(raw or {})
    state.update(tensors or {})
    out = tmp_path / "bad.safetensors"
    save_file(state, str(out), metadata=meta)
    return out


@pytest.fixture
def saved(tmp_path):
    return checkpoint.save(tiny_model(), tmp_path / "good.safetensors")


@pytest.mark.parametrize(("section", "field", "value", "problem"), [
    ("config", "num_heads", 0, "must be at least 1"),
    ("config", "depth", 1_000_000_000, "must be at most 1000"),
    ("config", "embed_dim", "32", "not a whole number"),
    ("config", "num_classes", 4.5, "not a whole number"),
    ("config", "stride", [0, 10], "must be at least 1"),
    ("config", "patch_size", [16], "not a pair of whole numbers"),
    ("config", "mlp_ratio", -1, "must be positive"),
    ("config", "distilled", "yes", "not true or false"),
    ("features", "sample_rate", 0, "must be at least 1"),
    ("features", "frame_shift_ms", 0, "must be positive"),
    ("features", "std", float("nan"), "not a finite number"),
    ("features", "mean", None, "not a number"),
    ("labels", "names", "Speech", "not a list of strings"),
])
def test_every_malformed_field_is_named_before_the_model_is_built(saved, tmp_path, monkeypatch,
                                                                   section, field, value, problem):
    bad = _rewritten(saved, tmp_path, section=section, field=field, value=value)
    monkeypatch.setattr(checkpoint, "empty_model", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(bad)
    assert str(caught.value) == f"{bad}: {section}.{field} = {json.dumps(value)}: {problem}"
    with pytest.raises(CheckpointError):
        checkpoint.read_metadata(bad)  # what `models info` shows


def test_a_format_version_that_is_no_number(saved, tmp_path):
    bad = _rewritten(saved, tmp_path, raw={"format_version": "abc"})
    with pytest.raises(CheckpointError, match="format_version 'abc' is not a whole number"):
        checkpoint.load(bad)


def test_nan_or_infinite_weights_are_refused_at_load(saved, tmp_path):
    weights = checkpoint.read_tensors(saved)["head.weight"].clone()
    weights[0, 0] = float("nan")
    bad = _rewritten(saved, tmp_path, tensors={"head.weight": weights})
    with pytest.raises(CheckpointError, match=r"weights head\.weight hold NaN or infinite"):
        checkpoint.load(bad)


def test_the_cli_names_the_file_and_the_field(saved, tmp_path):
    from typer.testing import CliRunner

    from asttag.cli import app

    bad = _rewritten(saved, tmp_path, section="config", field="num_heads", value=0)
    result = CliRunner().invoke(app, ["tag", "-m", str(bad), str(tmp_path / "x.wav")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}: config.num_heads = 0: must be at least 1"]
