import json

import numpy as np
import pytest
import torch

import asttag
from asttag.export import INPUT_NAME, OUTPUT_NAMES, ExportError, export_onnx
from asttag.features import FeatureConfig
from asttag.labels import LabelSet
from asttag.model import AST, ASTConfig
from conftest import tiny_model

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def onnx_session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def assert_parity(model, path, batch_sizes=(1, 3)):
    """The ONNX file gives torch's logits and probabilities (to 1e-4) at any batch size."""
    session = onnx_session(path)
    generator = torch.Generator().manual_seed(0)
    for batch in batch_sizes:
        x = torch.randn(batch, model.config.target_length, model.config.num_mel_bins, generator=generator)
        logits, probs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
        with torch.no_grad():
            expected = model(x)
        assert logits.shape == tuple(expected.shape)
        assert np.abs(logits - expected.numpy()).max() <= 1e-4
        assert np.abs(probs - model.probabilities(expected).numpy()).max() <= 1e-4


def test_base_shaped_model_parity(tmp_path):
    # Base's width, heads, patches and input (1024 x 128, stride 10: 1214 tokens); one of its 12
    # blocks keeps the test fast, as depth only repeats the same block.
    torch.manual_seed(0)
    model = AST(ASTConfig.from_preset("base384", depth=1)).eval()
    with torch.no_grad():  # random LayerNorm affines, as trained models have
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
    assert_parity(model, export_onnx(model, tmp_path / "base.onnx"), batch_sizes=(2,))


def test_half_precision_single_label_model(tmp_path):
    model = tiny_model(num_classes=3).half()
    model.labels = LabelSet.from_names(["dog", "cat, wild", "bird"], multi_label=False)
    path = export_onnx(model, tmp_path / "tiny.onnx")
    assert next(model.parameters()).dtype == torch.float16  # the caller's model is left alone
    meta = onnx_session(path).get_modelmeta().custom_metadata_map
    assert LabelSet.from_dict(json.loads(meta["labels"])) == model.labels
    assert_parity(model.float(), path)  # exported in fp32; probabilities are the softmax


def test_ensemble_refused(tmp_path):
    from asttag.ensemble import Ensemble

    with pytest.raises(ExportError, match="only a single AST"):
        export_onnx(Ensemble([tiny_model(0), tiny_model(1)]), tmp_path / "e.onnx")
    assert not list(tmp_path.iterdir())


def test_missing_onnx_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)
    with pytest.raises(ExportError, match=r"onnxscript package: pip install 'asttag\[onnx\]'"):
        export_onnx(tiny_model(), tmp_path / "t.onnx")


def test_cli_export_of_the_default_model_runs_describes_itself_and_refuses_to_overwrite(tmp_path):
    from typer.testing import CliRunner

    from asttag.cli import app

    out = tmp_path / "default.onnx"
    runner = CliRunner()
    result = runner.invoke(app, ["models", "export", "default", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"wrote {out}" in " ".join(result.stderr.split())
    model = asttag.load_model("default")
    assert_parity(model, out)
    meta = onnx_session(out).get_modelmeta().custom_metadata_map
    assert FeatureConfig.from_dict(json.loads(meta["features"])) == model.features
    assert LabelSet.from_dict(json.loads(meta["labels"])) == model.labels
    assert ASTConfig.from_dict(json.loads(meta["config"])) == model.config
    assert meta["asttag_version"] == asttag.__version__

    written = out.read_bytes()
    refused = runner.invoke(app, ["models", "export", "default", str(out)])
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert out.read_bytes() == written


def test_cli_export_of_an_ensemble_fails_with_the_reason(tmp_path):
    from typer.testing import CliRunner

    from asttag.cli import app
    from asttag.ensemble import Ensemble, save_bundle

    bundle = save_bundle(Ensemble([tiny_model(0), tiny_model(1)]), tmp_path / "e.safetensors")
    result = CliRunner().invoke(app, ["models", "export", str(bundle), str(tmp_path / "e.onnx")])
    assert result.exit_code == 1
    assert f"error: {bundle}: only a single AST exports to ONNX" in result.stderr
