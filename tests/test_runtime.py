"""ONNX Runtime as the tagger's CPU runtime (asttag.runtime): same scores as torch, no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from asttag import checkpoint, runtime
from asttag.runtime import OnnxModel, RuntimeChoiceError, cached_export, onnx_model
from asttag.tagger import Tagger
from conftest import tiny_model, write_tone

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, cache) -> Path:
    """A tiny checkpoint with a recommended threshold, exported once into `cache`."""
    model = tiny_model(seed=3)
    path = checkpoint.save(model, tmp_path_factory.mktemp("model") / "tiny.safetensors",
                           extra={"event_threshold": {"value": 0.4, "rule": "test"}})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTTAG_CACHE", str(cache))
        cached_export(path)
    return path


@pytest.fixture
def in_cache(cache, monkeypatch):
    monkeypatch.setenv("ASTTAG_CACHE", str(cache))


def test_scores_equal_torchs_and_do_not_depend_on_the_batch(saved, in_cache):
    onnx = onnx_model(str(saved), runtime="onnxruntime", device="cpu")
    assert isinstance(onnx, OnnxModel)
    model = checkpoint.load(saved)
    x = np.random.default_rng(0).standard_normal((9, 64, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = model.predict(torch.from_numpy(x)).numpy()
    whole = onnx.predict(x)
    assert np.abs(whole - expected).max() <= 1e-6
    # What lets the tagger score a short last batch as it is: a window's scores are the same
    # whatever else shares its batch.
    for rows in ([0], [3, 1], list(range(9))[::-1]):
        assert np.array_equal(onnx.predict(x[rows]), whole[rows])


def test_tagger_on_onnx_runtime_tags_as_on_torch(saved, in_cache, tmp_path):
    files = [write_tone(tmp_path / "a.wav", seconds=2.3), write_tone(tmp_path / "b.wav", seconds=0.7,
                                                                      freq=900, rate=44100)]
    onnx = onnx_model(str(saved), runtime="onnxruntime", device="cpu")
    with_onnx = Tagger(onnx, hop=0.32, batch_size=4)
    with_torch = Tagger(checkpoint.load(saved), device="cpu", hop=0.32, batch_size=4)
    assert with_onnx.event_threshold == 0.4  # the checkpoint's own record came through the export
    assert with_onnx.options()["runtime"] == "onnxruntime" != with_torch.options()["runtime"]
    for a, b in zip(with_onnx.tag_many(files), with_torch.tag_many(files)):
        assert np.abs(a.scores - b.scores).max() <= 1e-6
        assert [t.label for t in a.tags] == [t.label for t in b.tags]
        assert np.array_equal(a.starts, b.starts)


def test_export_is_made_once_and_again_when_the_checkpoint_changes(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("ASTTAG_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(saved.read_bytes())
    exports = []
    import asttag.export

    def counted(model, path, **kwargs):
        exports.append(path)
        return original(model, path, **kwargs)

    original = asttag.export.export_onnx
    monkeypatch.setattr(asttag.export, "export_onnx", counted)
    first = cached_export(copy)
    assert cached_export(copy) == first and len(exports) == 1
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 10**9))  # an edited file
    second = cached_export(copy)
    assert second != first and len(exports) == 2


def test_choosing_the_runtime(saved, in_cache, tmp_path, monkeypatch):
    assert onnx_model(str(saved), runtime="torch") is None
    # auto falls back to torch where ONNX Runtime cannot run the model ...
    assert onnx_model(str(saved), runtime="auto", device="cpu", precision="int8") is None
    official = tmp_path / "model.pth"
    torch.save(tiny_model().state_dict(), official)
    assert onnx_model(str(official), runtime="auto", device="cpu") is None
    # ... and saying onnxruntime says why it cannot.
    with pytest.raises(RuntimeChoiceError, match="fp32 here, not bf16"):
        onnx_model(str(saved), runtime="onnxruntime", device="cpu", precision="bf16")
    with pytest.raises(RuntimeChoiceError, match="on the CPU here, not on cuda"):
        onnx_model(str(saved), runtime="onnxruntime", device="cuda")
    with pytest.raises(RuntimeChoiceError, match="model.pth is not an asttag checkpoint"):
        onnx_model(str(official), runtime="onnxruntime", device="cpu")
    with pytest.raises(RuntimeChoiceError, match="unknown runtime 'tvm'"):
        onnx_model(str(saved), runtime="tvm")
    monkeypatch.setattr(runtime, "_missing", lambda *modules: list(modules))
    assert onnx_model(str(saved), runtime="auto", device="cpu") is None
    with pytest.raises(RuntimeChoiceError, match=r"onnxruntime is not installed \(pip install"):
        onnx_model(str(saved), runtime="onnxruntime", device="cpu")


def test_auto_keeps_a_machine_with_a_gpu_driver_on_torch(saved, in_cache, monkeypatch):
    monkeypatch.setattr(runtime, "_gpu_possible", lambda: True)
    assert onnx_model(str(saved), runtime="auto", device="auto") is None
    assert isinstance(onnx_model(str(saved), runtime="auto", device="cpu"), OnnxModel)


def test_a_damaged_export_is_refused_and_a_damaged_cache_entry_made_again(saved, tmp_path,
                                                                         monkeypatch):
    bad = tmp_path / "damaged.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(RuntimeChoiceError, match="damaged.onnx: ONNX Runtime cannot load it"):
        OnnxModel.load(bad)
    monkeypatch.setenv("ASTTAG_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(saved.read_bytes())
    entry = cached_export(copy)
    entry.write_bytes(b"truncated")  # a disk fault, a killed copy: the cache is asttag's to mend
    model = onnx_model(str(copy), runtime="onnxruntime", device="cpu")
    assert isinstance(model, OnnxModel) and model.path == entry and entry.stat().st_size > 1000


def test_the_command_tags_without_importing_torch(saved, cache, tmp_path):
    """The point of the runtime: from the cached export, `asttag tag` never imports torch."""
    recording = write_tone(tmp_path / "tone.wav", seconds=1.5)
    script = (
        "import sys\n"
        "from asttag.cli import main\n"
        f"sys.argv = ['asttag', 'tag', {str(recording)!r}, '-m', {str(saved)!r}, '-f', 'json', '-q']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "ASTTAG_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads(proc.stdout)
    assert entry["file"] == str(recording) and entry["tags"]


def test_the_command_says_once_that_it_exports_on_first_use(saved, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from asttag.cli import app

    monkeypatch.setenv("ASTTAG_CACHE", str(tmp_path / "fresh"))
    recording = write_tone(tmp_path / "tone.wav", seconds=1.0)
    args = ["tag", str(recording), "-m", str(saved), "--workers", "0", "-f", "csv"]
    first, again = CliRunner().invoke(app, args), CliRunner().invoke(app, args)
    assert first.exit_code == again.exit_code == 0, first.stderr
    assert "exported for ONNX Runtime on first use, once" in first.stderr
    assert "exported" not in again.stderr and first.stdout == again.stdout


def test_operator_threads_follow_omp_num_threads_as_torchs_do(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert runtime.default_threads() == len(os.sched_getaffinity(0))
