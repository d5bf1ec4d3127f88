"""The default model's corpus recipe (models/recipes/default_corpus.py): keeping held-out audio
out of training when it comes back under other bytes."""

from __future__ import annotations

import argparse
import collections
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asttag.recipes import RecipeError
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


def _rcc(files: dict[str, tuple[bytes, int]], version: int = 3) -> bytes:
    """A Qt binary resource file holding `files` (path -> (stored bytes, flags)), written in the
    layout Qt documents: header, entries (32-bit length, then bytes), names (16-bit length,
    32-bit hash, UTF-16), then the tree of nodes, directories' children numbered breadth first."""
    tree: dict = {}
    for path, entry in files.items():
        *folders, leaf = path.split("/")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = entry
    header = 24 if version >= 3 else 20
    payloads, names, nodes = bytearray(), bytearray(), []
    order: list[tuple[str, object]] = [("", tree)]
    for name, node in order:  # grows while it is walked: breadth first
        name_offset = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
        if isinstance(node, dict):
            record = struct.pack(">IHII", name_offset, 0x02, len(node), len(order))
            order += sorted(node.items())
        else:
            stored, flags = node
            record = struct.pack(">IHHHI", name_offset, flags, 0, 0, len(payloads))
            payloads += struct.pack(">I", len(stored)) + stored
        nodes.append(record + (struct.pack(">Q", 0) if version >= 2 else b""))
    names_at = header + len(payloads)
    tree_at = names_at + len(names)
    head = b"qres" + struct.pack(">IIII", version, tree_at, header, names_at)
    if version >= 3:
        head += struct.pack(">I", 0)
    return head + bytes(payloads) + bytes(names) + b"".join(nodes)


def _zlib_entry(raw: bytes) -> tuple[bytes, int]:
    """An entry as rcc compresses it: qCompress's 32-bit length, then a zlib stream."""
    return struct.pack(">I", len(raw)) + zlib.compress(raw), 0x01


@pytest.mark.parametrize("version", [1, 2, 3])
def test_qt_resource_files_are_read_in_the_documented_layout(corpus_module, version):
    data = _rcc({"a/b/plain.txt": (b"plain bytes", 0), "a/packed.qml": _zlib_entry(b"x" * 500),
                 "top.ogg": (b"ogg", 0)}, version)
    entries = corpus_module.rcc_files(data, "t.rcc")
    assert [e.path for e in entries] == ["a/b/plain.txt", "a/packed.qml", "top.ogg"]
    assert [corpus_module.rcc_read(data, e, "t.rcc") for e in entries] == [b"plain bytes", b"x" * 500, b"ogg"]


def test_package_recordings_include_those_inside_qt_resource_files(corpus_module, tmp_path):
    """gcompris-qt-data packs its sounds in .rcc files: the recordings are found as members, each
    collection the resource file and the member's folder, and decode to what was packed."""
    packed = io.BytesIO()
    sf.write(packed, _tone(440.0), RATE, format="WAV", subtype="PCM_16")
    rcc = tmp_path / "usr/share/game/rcc/farm.rcc"
    rcc.parent.mkdir(parents=True)
    rcc.write_bytes(_rcc({"game/farm/resource/cow.wav": _zlib_entry(packed.getvalue()),
                          "game/farm/resource/horse.wav": (packed.getvalue(), 0),
                          "game/farm/Farm.qml": (b"Item {}", 0)}))
    found = list(corpus_module.package_recordings("pkg", tmp_path, collections.Counter()))
    rel = "usr/share/game/rcc/farm.rcc"
    assert [(s.collection, s.original) for s in found] == [
        (f"{rel}:game/farm/resource", f"{rel}:game/farm/resource/cow.wav"),
        (f"{rel}:game/farm/resource", f"{rel}:game/farm/resource/horse.wav")]
    for source in found:
        decoded = source.load()
        assert decoded.sample_rate == RATE and np.allclose(decoded.samples[:, 0], _tone(440.0), atol=1e-4)


def test_what_the_qt_resource_reader_cannot_read_is_said(corpus_module):
    good = _rcc({"a.wav": (b"RIFF", 0)})
    with pytest.raises(RecipeError, match="t.rcc: not a Qt resource file"):
        corpus_module.rcc_files(b"PK\x03\x04" + good[4:], "t.rcc")
    with pytest.raises(RecipeError, match="version 4"):
        corpus_module.rcc_files(good[:4] + struct.pack(">I", 4) + good[8:], "t.rcc")
    with pytest.raises(RecipeError, match="truncated or corrupt"):
        corpus_module.rcc_files(good[:-10], "t.rcc")
    # The root directory's one child is the root itself.
    looped = bytearray(_rcc({"d/a.wav": (b"RIFF", 0)}))
    tree_at = struct.unpack_from(">I", looped, 8)[0]
    struct.pack_into(">I", looped, tree_at + 10, 0)
    with pytest.raises(RecipeError, match="node 0 is reached twice"):
        corpus_module.rcc_files(bytes(looped), "t.rcc")
    zstd = _rcc({"a.wav": (b"\x28\xb5\x2f\xfd...", 0x04)})
    (entry,) = corpus_module.rcc_files(zstd, "t.rcc")
    with pytest.raises(RecipeError, match="t.rcc:a.wav: zstd-compressed"):
        corpus_module.rcc_read(zstd, entry, "t.rcc")


def test_held_out_rules_take_whole_packages_collections_or_single_recordings(corpus_module, monkeypatch):
    monkeypatch.setitem(corpus_module.HELDOUT, "zoo", ("birds", "mammals/cow.ogg"))
    monkeypatch.setitem(corpus_module.HELDOUT, "whole", corpus_module.WHOLE)
    split = corpus_module.split_of
    assert split("whole", "any", "any/x.ogg") == "heldout"
    assert split("zoo", "stamps/birds", "stamps/birds/owl.ogg") == "heldout"
    assert split("zoo", "stamps/mammals", "stamps/mammals/cow.ogg") == "heldout"
    # The cow's sibling, a file whose name only ends like the rule's, and the cow's spoken
    # description stay in training.
    assert split("zoo", "stamps/mammals", "stamps/mammals/cow_white.ogg") == "train"
    assert split("zoo", "stamps/mammals", "stamps/mammals/brown_cow.ogg") == "train"
    assert split("zoo", "stamps/mammals", "stamps/mammals/cow_desc_fr.ogg") == "train"
    assert split("other", "stamps/birds", "stamps/birds/owl.ogg") == "train"
