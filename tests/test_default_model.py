"""The default model's rebuild recipe (models/recipes/default_model.py) at a tiny scale, with a
fake teacher standing in for YAMNet. Nothing is downloaded; no corpus is read."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from fake_teacher import DOG, MUSIC, RATE, SPEECH, FakeYamnet, tone

from asttag import yamnet
from asttag.distill import window_scores
from asttag.ensemble import Ensemble, is_bundle, load_bundle, read_bundle_metadata, save_bundle
from asttag.labels import audioset
from asttag.recipes import load_recipe
from asttag.rundir import RECIPE_FILE
from asttag.thresholds import FALLBACK, KEY, recommended
from conftest import recipe_script, tiny_config


@pytest.fixture(scope="module")
def recipe_module():
    with recipe_script("default_model") as module:
        yield module


def _fake_corpus(root: Path) -> Path:
    """A corpus manifest in default_corpus.py's layout: a few generated clips per kind."""
    rows = []
    for i, (kind, level, collection, split) in enumerate([
        ("Speech", 0.8, "voices", "train"), ("Speech", 0.8, "voices", "train"),
        ("Music", 0.1, "songs", "train"), ("Music", 0.1, "songs", "train"),
        ("Dog", 0.5, "effects", "train"), ("Speech", 0.8, "other-voices", "heldout"),
        ("Music", 0.1, "other-songs", "heldout"),
    ]):
        clip = f"clips/{collection}/{i}.flac"
        (root / clip).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(root / clip), tone(2.0 + i % 3, level, seed=i), RATE)
        rows.append({"clip": clip, "split": split, "collection": collection, "package": collection,
                     "top": [[kind, 0.9]], "duration": 2.0 + i % 3})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_draw_weights_share_kinds_as_configured(recipe_module):
    rows = [{"top": [["Music", 1]], "collection": "m"}] * 8 + [{"top": [["Speech", 1]], "collection": "s"}] * 2 \
        + [{"top": [["Dog", 1]], "collection": "d"}]
    weights = recipe_module.draw_weights(rows)
    assert weights[:8].sum() == pytest.approx(recipe_module.KIND_SHARES["music"])
    assert weights[8:10].sum() == pytest.approx(recipe_module.KIND_SHARES["speech"])
    assert weights[10] == pytest.approx(recipe_module.KIND_SHARES["other"])


def test_draw_weights_balance_classes_within_a_kind(recipe_module):
    """Four dog clips and one horse clip: each class gets half of the other-sounds share."""
    rows = [{"top": [["Dog", 0.9], ["Bark", 0.05]], "collection": "d"}] * 4 \
        + [{"top": [["Horse", 0.9]], "collection": "h"}]
    weights = recipe_module.draw_weights(rows)
    assert weights[4] == pytest.approx(weights[:4].sum()) == pytest.approx(0.5)


def test_a_clip_stands_for_its_top_class_and_other_strong_ones(recipe_module):
    row = {"top": [["Dog", 0.05], ["Bark", 0.5], ["Growling", 0.09]]}
    assert recipe_module.clip_labels(row) == {"Dog", "Bark"}


def test_wider_checks_take_every_held_out_clip_the_teacher_is_sure_of_but_speech_and_music(recipe_module):
    tops = [
        ("a", "heldout", [["Dog", 0.9], ["Bark", 0.8]]),  # in the student's top 3
        ("a", "heldout", [["Horse", 0.5]]),  # the rule's edge: in, missed
        ("b", "heldout", [["Bell", 0.9]]),
        ("b", "heldout", [["Bell", 0.49]]),  # the teacher is not sure: out
        ("b", "heldout", [["Speech", 0.99]]),  # Speech and Music have their own figures
        ("b", "heldout", [["Music", 0.99]]),
        ("b", "heldout", []),  # the teacher hears nothing
        ("a", "train", [["Dog", 0.9]]),  # training clips never count
    ]
    rows = [{"clip": f"clips/{package}/{i}.flac", "package": package, "split": split, "top": top}
            for i, (package, split, top) in enumerate(tops)]
    student = {"Dog": ["Dog", "Animal", "Bark"], "Horse": ["Animal", "Speech", "Music"], "Bell": ["Bell", "Chime", "Ding"]}
    asked: list[Path] = []

    def top3(path):
        asked.append(path)
        return student[next(r["top"][0][0] for r in rows if Path("/c") / r["clip"] == path)]

    figures = recipe_module.teacher_top_checks(rows, top3, Path("/c"))
    assert figures == {"clips": 3, "in_top3": 2, "share": pytest.approx(2 / 3),
                       "by_package": {"a": {"clips": 2, "in_top3": 1}, "b": {"clips": 1, "in_top3": 1}},
                       "missed": [{"clip": "clips/a/1.flac", "teacher_top": "Horse", "top3": student["Horse"]}]}
    assert asked == [Path("/c/clips/a/0.flac"), Path("/c/clips/a/1.flac"), Path("/c/clips/b/2.flac")]


def test_rebuild_recipe_end_to_end_at_a_tiny_scale(recipe_module, tmp_path, monkeypatch):
    """Windows (augmented, resumable by shard), held-out windows, one epoch of the shipped
    student recipe, evaluation: the path `default_model.py build` takes, with a fake teacher."""
    m = recipe_module
    corpus = _fake_corpus(tmp_path / "corpus")
    data = tmp_path / "run" / "data"
    monkeypatch.setattr(m, "SHARD", 4)
    teacher = FakeYamnet()
    train = m.build_train_windows(corpus, data, teacher, count=6, window_seconds=3.0, seed=1,
                                  mix_p=0.5, speed_p=0.5, procedural=6, procedural_cap=1)
    lines = train.read_text().splitlines()
    recorded = [line for line in lines if "from" in json.loads(line)]
    assert len(recorded) == 6 and sorted(p.name for p in (data / "shards").iterdir()) == ["0000.jsonl", "0001.jsonl"]
    assert any(len(json.loads(line)["from"]) == 2 for line in recorded)  # some windows are mixtures
    # The fake teacher's top classes are Speech (loud) and Music (quiet): one procedural window each.
    assert sorted(json.loads(line)["top"] for line in lines[6:]) == [MUSIC, SPEECH]
    for line in lines:
        info = sf.info(str(data / json.loads(line)["path"]))
        assert info.samplerate == RATE and info.duration <= 3.0 + 1e-6

    first = (data / "shards" / "0000.jsonl").stat().st_mtime_ns
    (data / "shards" / "0001.jsonl").unlink()  # as if interrupted in the second shard
    again = m.build_train_windows(corpus, data, teacher, count=6, window_seconds=3.0, seed=1,
                                  mix_p=0.5, speed_p=0.5, procedural=6, procedural_cap=1)
    assert (data / "shards" / "0000.jsonl").stat().st_mtime_ns == first
    assert again.read_text().splitlines() == lines  # rebuilt identically

    heldout, valid = m.build_heldout_windows(corpus, data, teacher, window_seconds=3.0)
    # Clips of 4 s and 2 s in 3 s windows: 3 s + 1 s, and 2 s.
    pieces = [json.loads(line) for line in heldout.read_text().splitlines()]
    assert [round(sf.info(str(data / p["path"])).duration, 3) for p in pieces] == [3.0, 1.0, 2.0]
    assert valid.exists()

    result = m.train_student(tmp_path / "run", data, epochs=1, device="cpu", workers=0, seed=3)
    assert result.summary["epochs"] == 1
    assert load_recipe(result.run_dir / RECIPE_FILE).seed == 3  # the build's seed starts the student
    # A later run goes on from the last epoch, to the epoch count it is given.
    result = m.train_student(tmp_path / "run", data, epochs=2, device="cpu", workers=0)
    assert result.summary["epochs"] == 2
    assert [r["epoch"] for r in map(json.loads, (result.run_dir / "metrics.jsonl").read_text().splitlines())] == [1, 2]
    checks = tmp_path / "checks.csv"
    checks.write_text("clip,expected,why\nclips/other-voices/5.flac,Speech,a voice\n")
    # Two epochs do not reach the recipe's averaging window: the run's model is its best epoch.
    distilled = m.shipped_model(result.run_dir)
    assert distilled == result.run_dir / "best.safetensors"

    # Rebalancing: the balanced sampler, from the distilled model, its epochs averaged.
    balanced = m.balance_student(tmp_path / "run", data, distilled, epochs=1, device="cpu", workers=0, seed=3)
    recipe = load_recipe(balanced.run_dir / RECIPE_FILE)
    assert balanced.run_dir == tmp_path / "run" / "balance" and balanced.summary["epochs"] == 1
    assert (recipe.balanced_sampler, recipe.init, recipe.lr, recipe.average_epochs) == \
        (True, str(distilled), m.BALANCE_LR, (1, 1))
    assert m.shipped_model(balanced.run_dir) == balanced.run_dir / "averaged.safetensors"
    with pytest.raises(SystemExit, match="started for 1 epochs, not 2"):
        m.balance_student(tmp_path / "run", data, distilled, epochs=2, device="cpu", workers=0)
    families = _families_file(tmp_path / "families.csv", [("clips/other-voices/5.flac", "speech", "Speech"),
                                                         ("clips/other-songs/6.flac", "music", "Music")])
    figures = m.evaluate(result.run_dir / "best.safetensors", heldout, corpus, device="cpu", checks=checks,
                         families=families)
    assert figures["windows"] == 3 and 0 <= figures["top1_agreement"] <= 1
    # The held-out families on the clips, the teacher's top (the manifest's) beside the student's.
    assert {f: figures["families"]["by_family"][f]["clips"] for f in ("speech", "music", "animals")} == \
        {"speech": 1, "music": 1, "animals": 0}
    assert [len(c["student"]) for c in figures["families"]["clips"]] == [3, 3]
    assert figures["families"]["by_family"]["speech"]["teacher_top1"] == 1.0
    assert figures["speech_top_on_heldout_speech"]["windows"] == 2
    assert len(figures["checks"]) == 1 and len(figures["checks"][0]["top3"]) == 3
    # The fake corpus holds out only speech and music: no clip for the wider checks.
    assert figures["teacher_top_in_top3"] == {"clips": 0, "in_top3": 0, "share": None, "by_package": {}, "missed": []}

    shipped = m.export(result.run_dir / "best.safetensors", tmp_path / "default.safetensors", heldout=heldout)
    assert shipped.stat().st_size < (result.run_dir / "best.safetensors").stat().st_size * 0.6
    from asttag.hub import load_model

    loaded = load_model(str(shipped))
    assert next(loaded.parameters()).dtype == torch.float32
    assert "3 held-out windows" in recommended(loaded).rule


def test_procedural_windows_keep_at_most_cap_per_teacher_top_class_and_resume(recipe_module, tmp_path,
                                                                             monkeypatch):
    m = recipe_module
    monkeypatch.setattr(m, "SHARD", 4)
    data = tmp_path / "data"
    teacher = FakeYamnet()
    lines = m.build_procedural_windows(data, teacher, candidates=12, cap=2, window_seconds=0.96, seed=0)
    records = [json.loads(line) for line in lines]
    assert sorted(r["top"] for r in records) == [MUSIC, MUSIC, SPEECH, SPEECH]
    speech, music = (audioset().ids[audioset().names.index(name)] for name in (SPEECH, MUSIC))
    for r in records:
        wave, rate = sf.read(str(data / r["path"]), dtype="float32")
        assert rate == RATE and len(wave) == 15360 and r["made_of"]
        # The window's scores are the teacher's for that sound: loud is Speech 0.9, quiet Music 0.6.
        loud = np.abs(wave).max() > 0.3
        assert (r["scores"][speech], r["scores"][music]) == ((0.9, 0.01) if loud else (0.01, 0.6))
    assert len(list((data / "procedural-shards").iterdir())) == 3

    first = (data / "procedural-shards" / "0000.jsonl").stat().st_mtime_ns
    (data / "procedural-shards" / "0002.jsonl").unlink()  # as if interrupted in the last shard
    again = m.build_procedural_windows(data, teacher, candidates=12, cap=2, window_seconds=0.96, seed=0)
    assert again == lines  # the finished shards' kept windows count against the cap again
    assert (data / "procedural-shards" / "0000.jsonl").stat().st_mtime_ns == first
    assert m.build_procedural_windows(tmp_path / "none", teacher, candidates=0, cap=2,
                                      window_seconds=0.96, seed=0) == []
    assert not (tmp_path / "none").exists()  # a build without procedural sounds writes nothing for them


class BrightTeacher(FakeYamnet):
    """Scores Dog by the share of a frame's energy above 3 kHz, a score edits can raise; every
    other class 0.01."""

    def frame_scores(self, wave16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        times, scores = super().frame_scores(wave16k)
        scores[:] = 0.01
        for i in range(len(times)):
            piece = wave16k[i * yamnet.HOP_SAMPLES : i * yamnet.HOP_SAMPLES + yamnet.FRAME_SAMPLES]
            power = np.abs(np.fft.rfft(piece)) ** 2
            bright = power[np.fft.rfftfreq(len(piece), 1 / RATE) > 3000].sum() / max(power.sum(), 1e-12)
            scores[i, self.columns[DOG]] = bright
        return times, scores


def test_sparse_classes_are_those_few_recorded_windows_hold_and_that_have_signal(recipe_module, monkeypatch):
    labels = audioset()
    key = {name: labels.ids[labels.names.index(name)] for name in (SPEECH, MUSIC, DOG)}
    monkeypatch.setattr(recipe_module, "CLIMB_BELOW", 2)
    lines = [json.dumps({"scores": {key[SPEECH]: 0.9, key[MUSIC]: 0.31, key[DOG]: 0.29}}),
             json.dumps({"scores": {key[SPEECH]: 0.8, key[DOG]: 0.6}})]
    sparse = {labels.names[i] for i in recipe_module.sparse_classes(lines, labels)}
    assert SPEECH not in sparse and {MUSIC, DOG, "Bird"} <= sparse  # Music and Dog once, Bird never
    assert not sparse & set(yamnet.MISSING_AUDIOSET_CLASSES)  # no signal: nothing to climb towards
    assert len(sparse) == 527 - 1 - len(yamnet.MISSING_AUDIOSET_CLASSES)


def test_climbed_windows_are_positive_for_their_class_seeded_and_resumable(recipe_module, tmp_path, monkeypatch):
    m = recipe_module
    for name, value in [("SHARD", 2), ("CLIMB_POOL", 12), ("CLIMB_STEPS", 8)]:
        monkeypatch.setattr(m, name, value)
    labels = audioset()
    dog, music = labels.names.index(DOG), labels.names.index(MUSIC)
    data, teacher = tmp_path / "data", BrightTeacher()
    # Music scores 0.01 everywhere: below CLIMB_START, out of reach, so no climbs for it.
    lines = m.build_climbed_windows(data, teacher, [music, dog], climbs=3, window_seconds=0.96, seed=0)
    records = [json.loads(line) for line in lines]
    assert records and {r["climbed_for"] for r in records} == {DOG}
    assert len(list((data / "climbed-shards").iterdir())) == 2  # 3 climbs for Dog, 2 per shard
    per_climb = Counter(r["path"].rsplit("-", 1)[0] for r in records)
    assert max(per_climb.values()) <= m.CLIMB_KEEP
    for r in records:
        wave, rate = sf.read(str(data / r["path"]), dtype="float32")
        assert rate == RATE and len(wave) == 15360
        assert r["scores"][labels.ids[dog]] >= m.POSITIVE
        # The stored score is the teacher's for the stored sound (to 16-bit FLAC and rounding).
        assert r["scores"][labels.ids[dog]] == pytest.approx(window_scores(teacher, wave)[dog], abs=0.01)

    (data / "climbed-shards" / "0001.jsonl").unlink()  # as if interrupted in the last shard
    assert m.build_climbed_windows(data, teacher, [music, dog], climbs=3, window_seconds=0.96, seed=0) == lines

    class Absent(BrightTeacher):
        def frame_scores(self, wave16k):
            raise AssertionError("a finished climb stage asked the teacher")

    # Finished: read back without rebuilding the pool (6,000 teacher calls in a real build).
    assert m.build_climbed_windows(data, Absent(), [music, dog], climbs=3, window_seconds=0.96, seed=0) == lines
    assert m.build_climbed_windows(tmp_path / "none", teacher, [dog], climbs=0, window_seconds=0.96, seed=0) == []
    assert not (tmp_path / "none").exists()

    # In a build, the climbs go towards the classes the recorded windows lack and join the manifest.
    corpus = _fake_corpus(tmp_path / "corpus")
    train = m.build_train_windows(corpus, tmp_path / "run", teacher, count=2, window_seconds=0.96, seed=0,
                                  mix_p=0.5, speed_p=0.5, climbs=1)
    built = [json.loads(line) for line in train.read_text().splitlines()]
    assert [("from" in r, r.get("climbed_for")) for r in built] == [(True, None)] * 2 + [(False, DOG)] * (len(built) - 2)
    assert len(built) > 2


def test_climbs_start_from_recorded_windows_only_for_classes_they_are_not_yet(recipe_module, tmp_path, monkeypatch):
    m = recipe_module
    for name, value in [("SHARD", 2), ("CLIMB_POOL", 3), ("CLIMB_STEPS", 8)]:
        monkeypatch.setattr(m, name, value)
    # Silent procedural sounds: no Dog in them, so only a recorded window can start a Dog climb.
    # By name: the sibling module is imported here when no earlier test has imported it.
    monkeypatch.setattr("procedural_sounds.procedural_sound",
                        lambda rng, samples: (np.zeros(samples, np.float32), "silence"))
    labels = audioset()
    dog, music = labels.names.index(DOG), labels.names.index(MUSIC)
    data, teacher = tmp_path / "data", BrightTeacher()
    t = np.arange(15360) / RATE
    dull = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.12 * np.random.default_rng(0).standard_normal(len(t))
    recorded = []
    for name, wave in [("dull", dull), ("bright", np.random.default_rng(1).standard_normal(len(t)) * 0.3)]:
        sf.write(str(_mkdir(data / "windows") / f"{name}.flac"), wave.astype(np.float32), RATE, subtype="PCM_16")
        stored = window_scores(teacher, wave.astype(np.float32))
        recorded.append(json.dumps({"path": f"windows/{name}.flac",
                                    "scores": {labels.ids[dog]: round(float(stored[dog]), 4)}}))
    assert json.loads(recorded[0])["scores"][labels.ids[dog]] < m.POSITIVE <= json.loads(recorded[1])["scores"][labels.ids[dog]]

    lines = m.build_climbed_windows(data, teacher, [music, dog], climbs=1, window_seconds=0.96, seed=0,
                                    recorded=recorded)
    records = [json.loads(line) for line in lines]
    # The bright window is a Dog window already (it would rank first): the climb starts from the dull one.
    assert records and {(r["climbed_for"], r["climbed_from"]) for r in records} == {(DOG, "windows/dull.flac")}
    assert all(r["scores"][labels.ids[dog]] >= m.POSITIVE for r in records)
    assert json.loads((data / "climbed-classes.json").read_text()) == [dog]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _student(seed: int = 0):
    """An untrained student with the recipe's 527 AudioSet classes, small enough for a test."""
    from asttag.features import FeatureConfig
    from asttag.model import AST

    torch.manual_seed(seed)
    return AST(tiny_config(num_classes=527, num_mel_bins=64, target_length=96), labels=audioset(),
               features=FeatureConfig(num_mel_bins=64, target_length=96)).eval()


def _heldout_windows(m, root: Path) -> Path:
    """The fake corpus's held-out clips in the recipe's 0.96 s windows, scored by the fake teacher:
    Speech 0.9 where loud, Music 0.6 where quiet (7 windows, 5 of them Speech)."""
    heldout, _ = m.build_heldout_windows(_fake_corpus(_mkdir(root / "corpus")), root / "run" / "data",
                                         FakeYamnet(), window_seconds=0.96)
    return heldout


def test_export_stores_the_event_threshold_calibrated_on_the_held_out_windows(recipe_module, tmp_path):
    """A student scoring Speech 0.88 and every other class 0.56 on any window: against the fake
    teacher's held-out windows (Speech where loud, Music where quiet), the best micro-F1 calls
    Speech alone, at the grid's step over 0.56 (0.57). Export stores that in place of the
    threshold training recorded, with its rule, and the tagger uses it for events."""
    from asttag.checkpoint import save
    from asttag.hub import load_model
    from asttag.tagger import Tagger

    m = recipe_module
    heldout = _heldout_windows(m, tmp_path)
    student = _student()
    with torch.no_grad():
        student.head.weight.zero_()
        # Biases exact in fp16, so the halved model scores just what this one does.
        student.head.bias.fill_(0.25)  # sigmoid: 0.562
        student.head.bias[audioset().names.index(SPEECH)] = 2.0  # 0.881
    student.extra = {"epoch": 1, KEY: {"value": 0.3, "rule": "chosen on 3 validation windows"}}
    trained = save(student, tmp_path / "averaged.safetensors", extra=student.extra)
    shipped = m.export(trained, tmp_path / "default.safetensors", heldout=heldout)

    model = load_model(str(shipped))
    assert model.extra[KEY]["value"] == 0.57 and model.extra["epoch"] == 1
    threshold = recommended(model)
    # Speech called on all 7 windows, right on 5; the 2 Music windows missed: 2 x 5 / (7 + 7).
    assert threshold.rule.startswith("maximises micro-F1 (0.714)")
    assert "7 held-out windows from 2 packages" in threshold.rule
    assert Tagger(model, device="cpu").event_threshold == 0.57


def test_export_without_held_out_windows_says_how_to_build_them(recipe_module, tmp_path):
    trained = save_bundle(Ensemble([_student()]), tmp_path / "model.safetensors")
    with pytest.raises(SystemExit, match="no held-out windows.*default_model.py evaluate"):
        recipe_module.main(["export", str(trained), "--run", str(tmp_path / "run"),
                            "--out", str(tmp_path / "default.safetensors")])
    assert not (tmp_path / "default.safetensors").exists()


def test_export_halves_an_ensemble_bundle_and_keeps_what_it_predicts(recipe_module, tmp_path):
    """Ensemble-S of students ships as one bundle: export writes its members in fp16 with the
    bundle's event threshold, and the loaded bundle predicts what the fp32 one does, to fp16
    rounding."""
    bundle = save_bundle(Ensemble([_student(seed=0), _student(seed=1)]), tmp_path / "ensemble.safetensors",
                         extra={"members": ["seed 0", "seed 1"]})
    shipped = recipe_module.export(bundle, tmp_path / "default.safetensors",
                                   heldout=_heldout_windows(recipe_module, tmp_path))
    assert is_bundle(shipped) and shipped.stat().st_size < bundle.stat().st_size * 0.6
    extra = read_bundle_metadata(shipped)["extra"]
    assert extra == {"members": ["seed 0", "seed 1"], "weights": "fp16", KEY: extra[KEY]}
    assert recommended(load_bundle(shipped)).rule == extra[KEY]["rule"] != FALLBACK.rule
    before, after = load_bundle(bundle), load_bundle(shipped)
    assert next(after.parameters()).dtype == torch.float32
    fbank = torch.randn(3, before.features.target_length, before.features.num_mel_bins)
    with torch.no_grad():
        assert torch.allclose(after.predict(fbank), before.predict(fbank), atol=2e-3)


def _teacher_top3(wave: np.ndarray) -> list[list]:
    """The corpus manifest's `top` for a clip: the teacher's three best classes over it."""
    teacher = FakeYamnet()
    clip = teacher.to_audioset(teacher.frame_scores(wave)[1]).max(axis=0)
    names = audioset().names
    return [[names[i], float(clip[i])] for i in np.argsort(-np.nan_to_num(clip, nan=-1))[:3]]


def _families_file(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("clip", "family", "expected", "why"), *((*row, "made up") for row in rows)])
    return path


def test_family_figures_put_the_student_beside_the_teacher_per_family(recipe_module, tmp_path):
    """Loud clips are Speech to the fake teacher, quiet ones Music; each family counts its own
    clips, at top 1 and top 3, for the student's tags and the teacher's on the same clips."""
    m = recipe_module
    clips = {"talk": tone(1.0, 0.8, seed=1), "song": tone(1.0, 0.1, seed=2),
             "woof": tone(1.0, 0.8, seed=3), "moo": tone(1.0, 0.1, seed=4), "ring": tone(1.0, 0.1, seed=5)}
    manifest = [{"clip": f"clips/{name}.flac", "split": "heldout", "top": _teacher_top3(wave)}
                for name, wave in clips.items()] + [{"clip": "clips/trained.flac", "split": "train", "top": []}]
    families = m.read_families(_families_file(tmp_path / "families.csv", [
        ("clips/talk.flac", "speech", "Speech"), ("clips/song.flac", "music", "Music"),
        ("clips/woof.flac", "animals", "Dog; Bark"), ("clips/moo.flac", "animals", "Cattle, bovinae; Moo"),
        ("clips/ring.flac", "alarms and bells", "Telephone bell ringing")]))
    assert families[2] == {"clip": "clips/woof.flac", "family": "animals", "expected": ["Dog", "Bark"]}
    student = {"talk": ["Speech", "Music", "Dog"], "song": ["Speech", "Music", "Guitar"],
               "woof": ["Animal", "Speech", "Bark"], "moo": ["Moo", "Animal", "Speech"],
               "ring": ["Music", "Beep, bleep", "Alarm"]}
    figures = m.family_figures(families, manifest, lambda path: student[path.stem], Path("/c"))
    by = figures["by_family"]
    assert list(by) == list(m.FAMILY_NAMES)
    assert by["speech"] == {"clips": 1, "student_top1": 1.0, "student_top3": 1.0, "teacher_top1": 1.0, "teacher_top3": 1.0}
    assert by["music"] == {"clips": 1, "student_top1": 0.0, "student_top3": 1.0, "teacher_top1": 1.0, "teacher_top3": 1.0}
    # The fake teacher's top is Speech or Music, its Dog rising frame by frame: the woof has Dog
    # in its teacher's top 3, the moo no Cattle or Moo.
    assert by["animals"] == {"clips": 2, "student_top1": 0.5, "student_top3": 1.0, "teacher_top1": 0.0, "teacher_top3": 0.5}
    assert by["alarms and bells"]["student_top3"] == 0.0 and by["nature"] == {
        "clips": 0, "student_top1": None, "student_top3": None, "teacher_top1": None, "teacher_top3": None}
    # Four clips without speech; the student says Speech for three (song, woof, moo), the teacher for the loud woof.
    assert figures["speech_in_top3_without_speech"] == {"clips": 4, "student": 0.75, "teacher": 0.25}
    talk = figures["clips"][0]
    assert {k: talk[k] for k in ("clip", "family", "expected", "student")} == {
        "clip": "clips/talk.flac", "family": "speech", "expected": ["Speech"], "student": student["talk"]}
    assert talk["teacher"][:2] == [SPEECH, DOG] and len(talk["teacher"]) == 3  # the third a tie at 0.01
    table = m.family_table(figures)
    assert "| animals | 2 | 50% | 0% | 100% | 50% |" in table and "| nature | 0 | - | - | - | - |" in table
    assert "| Speech in the top 3 of clips without speech | 4 | | | 75% | 25% |" in table

    # A listed clip that is not held out would be measured on audio training heard.
    trained = [{"clip": "clips/trained.flac", "family": "animals", "expected": ["Dog"]}]
    with pytest.raises(SystemExit, match="clips/trained.flac: listed in the held-out families but not a held-out clip"):
        m.family_figures(trained, manifest, lambda path: [], Path("/c"))


@pytest.mark.parametrize(("family", "expected", "complaint"), [
    ("pets", "Dog", "family 'pets' is not one of speech, music"), ("animals", "Dog; Woof woof", "not in AudioSet: \\['Woof woof'\\]")])
def test_the_families_file_names_families_and_audioset_classes_only(recipe_module, tmp_path, family, expected,
                                                                    complaint):
    path = _families_file(tmp_path / "families.csv", [("clips/a.flac", "speech", "Speech"), ("clips/b.flac", family, expected)])
    with pytest.raises(SystemExit, match=f"families.csv:3: .*{complaint}"):
        recipe_module.read_families(path)


def test_the_checked_in_families_file_is_valid_and_covers_every_family(recipe_module):
    """The model card's per-family table is measured on this file: every family has clips."""
    rows = recipe_module.read_families()
    counts = Counter(r["family"] for r in rows)
    assert set(counts) == set(recipe_module.FAMILY_NAMES) and min(counts.values()) >= 3
    assert len({r["clip"] for r in rows}) == len(rows)


def _corpus_model_and_ground_truth(root: Path) -> tuple[Path, Path, Path, Path]:
    """The fake corpus, an untrained student saved to a file, and ground truth for its held-out
    clips: one check (a song: Music) and one family clip (a voice: speech)."""
    from asttag.checkpoint import save

    corpus = _fake_corpus(root / "corpus")
    model = save(_student(), root / "model.safetensors")
    checks = root / "checks.csv"
    checks.write_text("clip,expected,why\nclips/other-songs/6.flac,Music,a song\n")
    families = _families_file(root / "families.csv", [("clips/other-voices/5.flac", "speech", "Speech")])
    return corpus, model, checks, families


def test_evaluate_builds_a_runs_missing_held_out_windows_then_scores_the_model(recipe_module, tmp_path, monkeypatch,
                                                                               capsys):
    """`evaluate` on a corpus without a training run: the teacher scores the held-out windows
    first (once), then the model is measured, its family table on stderr."""
    m = recipe_module
    corpus, model, checks, families = _corpus_model_and_ground_truth(tmp_path)
    teachers = []
    monkeypatch.setattr(m, "corpus_teacher", lambda args: teachers.append(FakeYamnet()) or teachers[-1])
    argv = ["evaluate", str(model), "--corpus", str(corpus), "--run", str(tmp_path / "run"),
            "--checks", str(checks), "--families", str(families)]
    figures = m.evaluate_command(m.parse_args(argv))
    heldout = tmp_path / "run" / "data" / "heldout.jsonl"
    # The held-out clips of 4 s and 2 s in the recipe's 0.96 s windows: 5 (the last one 0.16 s)
    # and 2 (a 0.08 s tail, under a tenth of a window, is left out).
    assert len(heldout.read_text().splitlines()) == figures["windows"] == 5 + 2
    assert figures["families"]["by_family"]["speech"]["clips"] == 1 and len(figures["checks"]) == 1
    assert "| speech | 1 |" in capsys.readouterr().err
    m.evaluate_command(m.parse_args(argv))
    assert len(teachers) == 1  # the second run reads the windows back


def test_rebalancing_halves_its_learning_rate_after_the_first_epoch_and_averages_them_all(recipe_module, tmp_path):
    from asttag.training.schedule import learning_rate

    recipe = recipe_module.balance_recipe(tmp_path, tmp_path / "distilled.safetensors", epochs=3)
    assert recipe.average_epochs == (1, 3) and recipe.epochs == 3 and recipe.balanced_sampler
    after_warmup = recipe_module.BALANCE_WARMUP + 1
    assert [learning_rate(recipe, epoch=e, step=after_warmup) for e in (1, 2, 3)] == \
        pytest.approx([1e-4, 5e-5, 2.5e-5])


def test_build_with_start_rebalances_that_model_and_distils_none(recipe_module, tmp_path, monkeypatch, capsys):
    """`build --start MODEL`: the windows, then the rebalancing stage from MODEL (no RUN/train),
    the start model's families kept beside the result's; --start without a stage to run, or
    naming no file, is a usage error."""
    m = recipe_module
    corpus, start, checks, families = _corpus_model_and_ground_truth(tmp_path)
    evaluated = []
    real_evaluate = m.evaluate

    def evaluate(model, heldout, corpus, *, device):
        evaluated.append(Path(model))
        return real_evaluate(model, heldout, corpus, device=device, checks=checks, families=families)

    monkeypatch.setattr(m, "evaluate", evaluate)
    monkeypatch.setattr(m, "corpus_teacher", lambda args: FakeYamnet())
    run = tmp_path / "run"
    common = ["build", "--corpus", str(corpus), "--run", str(run), "--windows", "4", "--procedural", "0",
              "--climbs", "0"]
    figures = m.build(m.parse_args([*common, "--start", str(start), "--balance-epochs", "1"]))
    assert not (run / "train").exists()
    assert evaluated == [start, run / "balance" / "averaged.safetensors"]
    assert figures["distilled"]["model"] == str(start) and figures["balance"]["epochs"] == 1
    assert "training" not in figures and figures["model"] == str(run / "balance" / "averaged.safetensors")
    assert load_recipe(run / "balance" / RECIPE_FILE).init == str(start)
    assert json.loads((run / "evaluation.json").read_text())["distilled"]["model"] == str(start)
    assert m.parse_args([*common, "--start", str(start)]).balance_epochs == m.BALANCE_EPOCHS
    for extra, problem in ([["--start", str(start), "--balance-epochs", "0"], "needs --balance-epochs above 0"],
                           [["--start", str(tmp_path / "none.safetensors")], "no such model file"],
                           [["--balance-epochs", "-1"], "must be 0 or more"]):
        with pytest.raises(SystemExit) as exit_:
            m.parse_args([*common, *extra])
        assert exit_.value.code == 2 and problem in capsys.readouterr().err
