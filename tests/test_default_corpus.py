"""The default model's corpus recipe (models/recipes/default_corpus.py): keeping held-out audio
out of training when it comes back under other bytes."""

from __future__ import annotations

import argparse
import collections
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import recipe_script

RATE = 16000


@pytest.fixture(scope="module")
def corpus_module():
    with recipe_script("default_corpus") as module:
        yield module


def _clap(seed: int, seconds: float = 0.6) -> np.ndarray:
    """A decaying noise burst: a percussive sample with an envelope of its own."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    return (rng.standard_normal(n) * np.exp(-np.arange(n) / (0.05 * RATE))).astype(np.float32) * 0.5


def _tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(root: Path, name: str, wave: np.ndarray, split: str, scores: np.ndarray) -> dict:
    clip, teacher = f"clips/{name}.flac", f"clips/{name}.npz"
    (root / "clips").mkdir(parents=True, exist_ok=True)
    sf.write(str(root / clip), wave, RATE, subtype="PCM_16")
    np.savez(root / teacher, times=np.array([0.5], np.float32),
             scores=scores[None].astype(np.float16))
    return {"clip": clip, "teacher": teacher, "split": split, "duration": len(wave) / RATE,
            "package": name.split("-")[0], "original": name, "sha1": name, "licence": "CC0-1.0"}


@pytest.fixture()
def corpus(tmp_path):
    clap_scores, tone_scores = np.eye(4)[0] + 0.1, np.eye(4)[1] + 0.1
    clap = _clap(0)
    shifted = np.concatenate([np.zeros(3, np.float32), clap[:-3]])  # 3 samples later
    noise = np.random.default_rng(9).standard_normal(len(clap)).astype(np.float32) * 0.002
    rows = [
        _write(tmp_path, "kit-clap", clap, "heldout", clap_scores),
        _write(tmp_path, "other-clap-quiet", 0.3 * shifted + noise, "train", clap_scores),
        _write(tmp_path, "other-clap-different", _clap(1), "train", clap_scores),
        _write(tmp_path, "voice-tone", _tone(440), "heldout", tone_scores),
        _write(tmp_path, "other-tone", 0.5 * _tone(440), "train", tone_scores),
        _write(tmp_path, "other-tone-higher", _tone(660), "train", tone_scores),
        _write(tmp_path, "other-clap-longer", np.concatenate([clap, clap]), "train", clap_scores),
    ]
    return tmp_path, rows


def test_copies_of_held_out_audio_are_found_under_other_bytes(corpus_module, corpus):
    root, rows = corpus
    pairs = corpus_module.near_duplicates(rows, root)
    found = {(p["heldout"], p["train"]) for p in pairs}
    # Another gain, 16-bit rounding, a 3-sample shift and faint noise: still the same clap;
    # the same tone at half the level too (its envelope is flat, so only the waveform decides).
    assert found == {("clips/kit-clap.flac", "clips/other-clap-quiet.flac"),
                     ("clips/voice-tone.flac", "clips/other-tone.flac")}
    assert all(p["similarity"] >= corpus_module.NEAR_DUPLICATE for p in pairs)


def test_the_manifest_leaves_copies_of_held_out_audio_out_of_training(corpus_module, corpus,
                                                                     tmp_path):
    root, rows = corpus
    # The journal's rows, as processing writes them: no split yet (the manifest assigns it).
    journal = argparse.Namespace(rows=[{**{k: v for k, v in r.items() if k != "split"},
                                        "collection": r["package"]} for r in rows])
    packages = {r["package"]: {"version": "1"} for r in rows}
    corpus_module.HELDOUT.update({"kit": corpus_module.WHOLE, "voice": corpus_module.WHOLE})
    teacher = tmp_path / "teacher.tflite"
    teacher.write_bytes(b"not a model")
    try:
        manifest = corpus_module.write_manifest(root, journal, packages, teacher,
                                                argparse.Namespace(segment_seconds=10.0))
    finally:
        del corpus_module.HELDOUT["kit"], corpus_module.HELDOUT["voice"]
    clips = {r["clip"] for r in manifest}
    assert "clips/other-clap-quiet.flac" not in clips and "clips/other-tone.flac" not in clips
    assert {"clips/kit-clap.flac", "clips/other-clap-different.flac",
            "clips/other-clap-longer.flac"} <= clips
    meta = json.loads((root / "packages.json").read_text())
    assert len(meta["near_duplicates_dropped"]) == 2


@pytest.mark.parametrize("archive", ["base.wz", "public.zip"])
def test_package_recordings_include_those_inside_zip_archives(corpus_module, tmp_path, archive):
    """warzone2100's .wz and 0ad's .zip are zip files: their recordings are found as members,
    each collection the archive and the member's folder, and decode to what was packed."""
    packed = io.BytesIO()
    sf.write(packed, _tone(440.0), RATE, format="WAV", subtype="PCM_16")
    with zipfile.ZipFile(tmp_path / archive, "w") as z:
        z.writestr("audio/horse/neigh.wav", packed.getvalue())
        z.writestr("audio/readme.txt", "not audio")
    skipped = collections.Counter()
    found = list(corpus_module.package_recordings("pkg", tmp_path, skipped))
    assert [(s.collection, s.original) for s in found] == [
        (f"{archive}:audio/horse", f"{archive}:audio/horse/neigh.wav")]
    decoded = found[0].load()
    assert decoded.sample_rate == RATE and np.allclose(decoded.samples[:, 0], _tone(440.0), atol=1e-4)
