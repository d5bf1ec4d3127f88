"""Shared test helpers: tiny models and generated audio. Nothing here downloads anything."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path

# One thread per process, set before numpy and torch start their pools, and inherited by the
# processes the tests start: the tiny models gain nothing from a second thread, and on busy
# cores threads waiting for each other doubled the suite's CPU time. A run may set its own.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Models and exports the tests make go to a cache of their own, never the user's: tagging
    exports a checkpoint for ONNX Runtime into $ASTTAG_CACHE on first use."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTTAG_CACHE", str(tmp_path_factory.mktemp("asttag-cache")))
        yield


def tiny_config(**overrides):
    """A small AST config that runs in milliseconds on a CPU."""
    from asttag.model import ASTConfig

    base = dict(num_classes=4, num_mel_bins=32, target_length=64, embed_dim=32, depth=2,
                num_heads=2, preset=None)
    return ASTConfig(**{**base, **overrides})


def tiny_model(seed: int = 0, **overrides):
    import torch

    from asttag.model import AST

    torch.manual_seed(seed)
    return AST(tiny_config(**overrides)).eval()


def write_tone(path: Path, *, seconds: float = 1.0, rate: int = 16000, freq: float = 440.0,
               channels: int = 1, seed: int = 0) -> Path:
    """A sine tone with a little noise, written with soundfile."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    sf.write(str(path), data.astype(np.float32), rate)
    return path


@pytest.fixture
def tone(tmp_path):
    """Factory: tone(name, **kw) writes a generated tone file in tmp_path."""
    return lambda name="tone.wav", **kw: write_tone(tmp_path / name, **kw)


@pytest.fixture(scope="session")
def esc(tmp_path_factory) -> Path:
    """A small ESC-50-layout set (training_fixtures): 5 classes, 2 clips per class and fold."""
    from training_fixtures import make_esc50

    return make_esc50(tmp_path_factory.mktemp("esc") / "ESC-50", per_fold=2)


@contextlib.contextmanager
def recipe_script(name: str):
    """One of the default model's rebuild scripts (models/recipes/NAME.py), imported as a module
    for as long as the block runs."""
    folder = Path(__file__).resolve().parents[1] / "models" / "recipes"
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script runs
    # Scripts import their sibling modules, as they do when run from their folder.
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(folder))
        del sys.modules[name]


def write_with_pyav(path: Path, samples: np.ndarray, rate: int, codec: str, *,
                    video: bool = False) -> Path:
    """Encode (channels, n) audio with FFmpeg through PyAV: float32 samples, or int16 ones that
    a lossless codec keeps exactly. `video` adds a small black video stream."""
    import fractions

    import av

    channels = samples.shape[0]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "stereo" if channels == 2 else "mono"
        if video:  # every stream exists before the first packet is written
            picture = container.add_stream("mpeg4", rate=10)
            picture.width = picture.height = 32
            picture.pix_fmt = "yuv420p"
            black = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for _ in range(int(samples.shape[1] / rate * 10)):
                container.mux(picture.encode(black))
            container.mux(picture.encode())
        for at in range(0, samples.shape[1], 1024):
            part = np.ascontiguousarray(samples[:, at : at + 1024])
            if part.dtype == np.int16:  # packed: the channels interleaved in one plane
                frame = av.AudioFrame.from_ndarray(part.T.reshape(1, -1), format="s16",
                                                   layout=stream.layout.name)
            else:
                frame = av.AudioFrame.from_ndarray(part.astype(np.float32), format="fltp",
                                                   layout=stream.layout.name)
            frame.sample_rate, frame.pts, frame.time_base = rate, at, fractions.Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
