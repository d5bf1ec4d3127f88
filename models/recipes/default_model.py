#!/usr/bin/env python3
"""Rebuild the embedded default model: distil YAMNet into a small AST on the built corpus.

    python models/recipes/default_model.py build --corpus /work/corpus --run /work/runs/default
    python models/recipes/default_model.py export /work/runs/default/balance/averaged.safetensors --run /work/runs/default --out asttag/data/default.safetensors
    python models/recipes/default_model.py measure --out speed.json

`build` runs every stage that is not done yet, so rerunning it after an interruption (or to train
more epochs: --epochs) goes on where it stopped:
  1. training windows: drawn from the corpus's train split, balanced by kind (speech, music,
     other sounds) and by the teacher's classes within a kind, augmented (mixtures of two clips
     from different sources, gain, pitch-and-speed changes), scored by the teacher; written in
     shards of SHARD windows; with --procedural N, also N generated sounds of generic families
     (procedural_sounds.py) scored by the teacher, at most PROCEDURAL_CAP kept per teacher top
     class (measured on the 0.96 s recipe: models/README.md, "Procedural sounds"); with
     --climbs K, also K greedy climbs of procedural sounds per class the recorded windows hold
     too little of, each edit judged by the teacher (models/README.md, "Climbed sounds"), and
     with --climb-recorded from recorded windows too;
  2. held-out windows: every held-out clip cut into the student's windows, unaugmented, scored
     by the teacher;
  3. training: the engine (asttag.training) on recipe default-student, resumed when started,
     then --balance-epochs of rebalancing (balance_recipe: the balanced sampler) in
     RUN/balance; with --start MODEL the rebalancing alone, from MODEL (models/README.md,
     "Rebalancing");
  4. evaluation of the run's model (shipped_model) on the held-out windows, the checks and, per
     sound family, the held-out clips of FAMILIES: evaluation.json (the family table on stderr).
`export` writes the shipped file: fp16 weights and the event threshold calibrated on the run's
held-out windows against the teacher's scores (`asttag tag --events` uses it).
`measure` times student candidates with the tagger's default settings on a generated
10-minute file (random weights: speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from asttag.atomic import atomic_write_text

log = logging.getLogger("default_model")

HERE = Path(__file__).resolve().parent
RECIPE = "default-student"  # shipped with asttag (asttag/data/recipes/)
CHECKS = HERE / "default_heldout_checks.csv"
FAMILIES = HERE / "default_heldout_families.csv"
# The sound families of the held-out figures (issue 25), in the order they are reported.
FAMILY_NAMES = ("speech", "music", "instruments", "animals", "household", "vehicles",
                "alarms and bells", "human non-speech", "nature")
SAMPLE_RATE = 16000
SHARD = 250  # windows per shard: the unit a rerun resumes window building from
KIND_SHARES = {"speech": 0.2, "music": 0.3, "other": 0.5}  # the corpus is 70% music, 10% other
BALANCE_EPOCHS = 3  # epochs of the rebalancing stage (balance_recipe)
BALANCE_LR = 1e-4  # its first epoch's learning rate: the distilled run's at about epoch 12
BALANCE_WARMUP = 200  # steps: the stage starts a fresh optimiser on trained weights
MAX_SPEED = 1.25  # speed and pitch changes span 1/MAX_SPEED..MAX_SPEED
LABEL_SCORE = 0.1  # a teacher score that makes a class one a clip stands for, in draw_weights
POSITIVE = 0.3  # a teacher score counted as a positive label in the mAP
TEACHER_SURE = 0.5  # a teacher top score that picks a held-out clip for the wider checks
VALID_WINDOWS = 300  # held-out windows scored after each epoch (all of them at the end)
PROCEDURAL_CAP = 200  # kept procedural windows per teacher top class: the families make beeps
# and noise far more often than bells or calls, so a cap spreads them over the teacher's classes
CLIMB_BELOW = 200  # classes held by fewer recorded windows than this get climbed windows
CLIMB_POOL = 6000  # procedural sounds the climbs start from
CLIMB_START = 0.1  # a class is climbed towards only from a sound the teacher scores this for
CLIMB_STEPS = 30  # random edits tried per climb
CLIMB_KEEP = 3  # windows kept per climb at most: its last (highest-scoring) positive sounds


# --------------------------------------------------------------------------- the corpus


def read_corpus(corpus: Path) -> list[dict]:
    """The corpus manifest's rows (see default_corpus.md)."""
    manifest = corpus / "manifest.jsonl"
    if not manifest.is_file():
        raise SystemExit(f"{manifest}: no corpus manifest; build it with default_corpus.py")
    return [json.loads(line) for line in manifest.read_text("utf-8").splitlines() if line.strip()]


def kind_of(row: dict) -> str:
    """speech, music or other, from the teacher's top class for the clip."""
    top = row["top"][0][0] if row["top"] else ""
    return {"Speech": "speech", "Music": "music"}.get(top, "other")


def clip_labels(row: dict) -> set[str]:
    """The classes a clip stands for: the teacher's top class and any other of its top
    classes scoring at least LABEL_SCORE."""
    top = row["top"]
    return {name for i, (name, score) in enumerate(top) if i == 0 or score >= LABEL_SCORE}


def draw_weights(rows: Sequence[dict]) -> np.ndarray:
    """Sampling weights: each kind gets its KIND_SHARES share; within a kind, a clip weighs
    the sum over its classes (clip_labels) of 1 / (clips having that class), the paper's
    balanced sampling for AudioSet, so a class with 4 clips is drawn about as often as one
    with 400 (each draw is augmented afresh and scored anew by the teacher)."""
    counts = Counter(label for r in rows for label in clip_labels(r))
    within = np.array([sum(1.0 / counts[label] for label in clip_labels(r)) for r in rows])
    kinds = np.array([kind_of(r) for r in rows])
    weights = np.zeros(len(rows))
    for kind, share in KIND_SHARES.items():
        mine = kinds == kind
        if mine.any():
            weights[mine] = share * within[mine] / within[mine].sum()
    return weights / weights.sum()


# --------------------------------------------------------------------------- augmentation


def read_clip(corpus: Path, row: dict, rng: np.random.Generator | None = None,
              samples: int | None = None) -> np.ndarray:
    """A clip, or (with rng and samples) a random stretch of at most `samples` of it: only that
    stretch is decoded, so long music costs no more than a short sound."""
    import soundfile as sf

    path = str(corpus / row["clip"])
    start, stop = 0, None
    if samples is not None:
        length = sf.info(path).frames
        start = int(rng.integers(max(1, length - samples + 1)))
        stop = start + samples
    wave, rate = sf.read(path, start=start, stop=stop, dtype="float32")
    if rate != SAMPLE_RATE:
        raise SystemExit(f"{row['clip']}: {rate} Hz; the corpus holds {SAMPLE_RATE} Hz clips")
    return wave


def change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (pitch up by the same ratio), by resampling."""
    from asttag.audio import resample

    # Rates in hundreds keep the resampler's kernel small.
    new_rate = int(round(SAMPLE_RATE / factor / 100) * 100)
    return resample(wave, SAMPLE_RATE, new_rate)


def augmented(wave: np.ndarray, rng: np.random.Generator, *, speed_p: float) -> np.ndarray:
    """A clip with a random gain (peak -20..0 dBFS) and, with probability speed_p, a speed and
    pitch change of 0.8-1.25x."""
    if rng.random() < speed_p:
        wave = change_speed(wave, float(np.exp(rng.uniform(-np.log(MAX_SPEED), np.log(MAX_SPEED)))))
    peak = float(np.abs(wave).max()) or 1.0
    return wave * (10 ** (rng.uniform(-20, 0) / 20) / peak)


def make_window(
    corpus: Path,
    rows: Sequence[dict],
    weights: np.ndarray,
    rng: np.random.Generator,
    *,
    window_samples: int,
    mix_p: float,
    speed_p: float,
) -> tuple[np.ndarray, list[str]]:
    """One training window and the clips it is made of.

    A drawn clip, augmented, cropped to the window at random; with probability mix_p a second
    clip from another source is added at a random offset and level (-10..+5 dB).
    """
    first = rows[rng.choice(len(rows), p=weights)]
    # A stretch long enough for the slowest speed change, cut to the window afterwards.
    stretch = int(window_samples * MAX_SPEED)
    wave = augmented(read_clip(corpus, first, rng, stretch), rng, speed_p=speed_p)
    if len(wave) > window_samples:
        start = int(rng.integers(len(wave) - window_samples + 1))
        wave = wave[start : start + window_samples]
    used = [first["clip"]]
    if rng.random() < mix_p:
        elsewhere = weights * np.array([r["collection"] != first["collection"] for r in rows])
        if not elsewhere.any():
            raise SystemExit("mixtures need clips from at least two sources (collections)")
        second = rows[rng.choice(len(rows), p=elsewhere / elsewhere.sum())]
        other = augmented(read_clip(corpus, second, rng, stretch), rng, speed_p=speed_p)
        other = other[: window_samples] * 10 ** (rng.uniform(-10, 5) / 20)
        offset = int(rng.integers(max(1, window_samples - len(other) + 1)))
        mixed = np.zeros(min(window_samples, max(len(wave), offset + len(other))), dtype=np.float32)
        mixed[: len(wave)] += wave
        mixed[offset : offset + len(other)] += other[: len(mixed) - offset]
        wave = mixed / max(1.0, float(np.abs(mixed).max()))
        used.append(second["clip"])
    return wave.astype(np.float32), used


# --------------------------------------------------------------------------- window sets


def build_train_windows(
    corpus: Path, data: Path, teacher, *, count: int, window_seconds: float, seed: int,
    mix_p: float, speed_p: float, procedural: int = 0, procedural_cap: int = PROCEDURAL_CAP,
    climbs: int = 0, climb_recorded: bool = False,
) -> Path:
    """Stage 1: `count` augmented windows in shards (finished shards are kept on a rerun), then
    the procedural (build_procedural_windows) and climbed (build_climbed_windows) ones; the
    training manifest of all three."""
    from asttag.distill import window_scores
    from asttag.labels import audioset

    rows = [r for r in read_corpus(corpus) if r["split"] == "train"]
    weights = draw_weights(rows)
    labels = audioset()

    def make(shard: int, indices: range, earlier: list[str]) -> list[str]:
        records = []
        for i in indices:
            # Seeded per window: a rerun rebuilds an unfinished shard identically.
            rng = np.random.default_rng([seed, i])
            wave, used = make_window(corpus, rows, weights, rng, window_samples=round(
                window_seconds * SAMPLE_RATE), mix_p=mix_p, speed_p=speed_p)
            path = data / "windows" / f"{shard:04d}" / f"{i:06d}.flac"
            record = _saved_window(data, path, wave, window_scores(teacher, wave), labels)
            records.append(json.dumps({**record, "from": used}))
        return records

    recorded = _in_shards(data / "shards", count, make, what="training windows")
    procedural_lines = build_procedural_windows(data, teacher, candidates=procedural, cap=procedural_cap,
                                                window_seconds=window_seconds, seed=seed)
    climbed = build_climbed_windows(data, teacher, sparse_classes(recorded, labels) if climbs else [],
                                    climbs=climbs, window_seconds=window_seconds, seed=seed,
                                    recorded=recorded if climb_recorded else [])
    return _write_manifest(data / "train.jsonl", recorded + procedural_lines + climbed)


def build_procedural_windows(
    data: Path, teacher, *, candidates: int, cap: int, window_seconds: float, seed: int,
) -> list[str]:
    """Stage 1, generated: `candidates` procedural sounds of the window's length, scored by the
    teacher; a sound is kept while fewer than `cap` kept ones share its teacher top class. In
    shards like the recorded windows (a rerun recounts the finished ones); the kept windows'
    manifest lines."""
    from procedural_sounds import procedural_sound

    from asttag.distill import window_scores
    from asttag.labels import audioset

    if not candidates:
        return []
    labels = audioset()
    kept: Counter[str] = Counter()

    def make(shard: int, indices: range, earlier: list[str]) -> list[str]:
        # Every kept window counts once, so the lines past that count are the finished shards
        # a rerun read back: their windows count against the cap too.
        kept.update(json.loads(line)["top"] for line in earlier[sum(kept.values()):])
        records = []
        for i in indices:
            # Seeded per sound, apart from the recorded windows' seeds ([seed, i]).
            wave, made_of = procedural_sound(np.random.default_rng([seed, i, 1]),
                                             round(window_seconds * SAMPLE_RATE))
            scores = window_scores(teacher, wave)
            top = labels.names[int(np.nanargmax(scores))]
            if kept[top] < cap:
                kept[top] += 1
                path = data / "procedural" / f"{shard:04d}" / f"{i:06d}.flac"
                record = _saved_window(data, path, wave, scores, labels)
                records.append(json.dumps({**record, "top": top, "made_of": made_of}))
        return records

    lines = _in_shards(data / "procedural-shards", candidates, make, what="procedural windows")
    log.info("procedural windows: %d kept of %d", len(lines), candidates)
    return lines


def sparse_classes(recorded: list[str], labels) -> list[int]:
    """The classes with teacher signal that fewer than CLIMB_BELOW of the recorded windows hold
    (score >= POSITIVE), in label order."""
    from asttag.yamnet import MISSING_AUDIOSET_CLASSES

    held = (_score_matrix(recorded, labels) >= POSITIVE).sum(axis=0)
    return [i for i, name in enumerate(labels.names)
            if held[i] < CLIMB_BELOW and name not in MISSING_AUDIOSET_CLASSES]


def build_climbed_windows(
    data: Path, teacher, targets: list[int], *, climbs: int, window_seconds: float, seed: int,
    recorded: Sequence[str] = (),
) -> list[str]:
    """Stage 1, searched: CLIMB_POOL procedural sounds scored by the teacher, and the `recorded`
    windows (manifest lines under `data`, their stored scores) as starts for the classes they
    are not yet positive for; for each target class some start scores at least CLIMB_START
    for, `climbs` greedy climbs (procedural_sounds.climbed, CLIMB_STEPS edits each) from the
    starts scoring highest for it; of each climb, the last CLIMB_KEEP sounds it kept that score
    >= POSITIVE for the class become windows. In shards of climbs; the classes within reach are
    recorded, so a rerun rebuilds the pool (identically) only while a shard is missing. The
    windows' manifest lines."""
    from functools import cache, partial

    import soundfile as sf
    from procedural_sounds import climbed, procedural_sound

    from asttag.distill import window_scores
    from asttag.labels import audioset

    if not climbs or not targets:
        return []
    labels = audioset()
    samples = round(window_seconds * SAMPLE_RATE)
    judge = partial(window_scores, teacher)

    @cache
    def pool() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """The procedural starting sounds, per class the indices of all starts (procedural,
        then recorded) from the highest score down, and per class the highest score."""
        # Seeded apart from the recorded ([seed, i]) and procedural ([seed, i, 1]) windows.
        waves = [procedural_sound(np.random.default_rng([seed, i, 2]), samples)[0] for i in range(CLIMB_POOL)]
        scores = np.nan_to_num(np.stack([judge(w) for w in waves]))
        if recorded:
            heard = _score_matrix(recorded, labels)
            # A recorded window the teacher already hears as a class is a training window for it:
            # a climb from there would add near copies, not a new way to sound like the class.
            heard[heard >= POSITIVE] = 0.0
            scores = np.concatenate([scores, heard])
        return waves, np.argsort(-scores, axis=0), scores.max(axis=0)

    def start(index: int) -> tuple[np.ndarray, dict]:
        """A starting sound, and what the climbed windows record of it (a recorded one's path)."""
        waves = pool()[0]
        if index < len(waves):
            return waves[index], {}
        window = json.loads(recorded[index - len(waves)])["path"]
        return sf.read(str(data / window), dtype="float32")[0], {"climbed_from": window}

    within_reach = data / "climbed-classes.json"
    if within_reach.exists():
        reachable = json.loads(within_reach.read_text("utf-8"))
    else:
        highest = pool()[2]
        reachable = [c for c in targets if highest[c] >= CLIMB_START]
        atomic_write_text(within_reach, json.dumps(reachable) + "\n")

    def make(shard: int, indices: range, earlier: list[str]) -> list[str]:
        best_first = pool()[1]
        records = []
        for i in indices:
            target, k = reachable[i // climbs], i % climbs
            wave, origin = start(best_first[k, target])
            path = climbed(np.random.default_rng([seed, i, 3]), wave, judge, target, CLIMB_STEPS)
            reached = [(w, s) for w, s in path if np.nan_to_num(s[target]) >= POSITIVE][-CLIMB_KEEP:]
            for n, (wave, scores) in enumerate(reached):
                saved = _saved_window(data, data / "climbed" / f"{shard:04d}" / f"{i:06d}-{n}.flac",
                                      wave, scores, labels)
                records.append(json.dumps({**saved, "climbed_for": labels.names[target], **origin}))
        return records

    lines = _in_shards(data / "climbed-shards", len(reachable) * climbs, make, what="climbed windows")
    log.info("climbed windows: %d from %d climbs for %d classes (%d of them within reach)",
             len(lines), len(reachable) * climbs, len(targets), len(reachable))
    return lines


def _score_matrix(lines: Sequence[str], labels) -> np.ndarray:
    """The manifest lines' stored scores, a row per line in label order (0 where none is stored)."""
    from asttag.distill import soft_scores

    return np.stack([soft_scores(json.loads(line)["scores"], labels) for line in lines])


def build_heldout_windows(corpus: Path, data: Path, teacher, *, window_seconds: float) -> tuple[Path, Path]:
    """Stage 2: every held-out clip cut into consecutive windows of the student's length (the
    last one shorter), unaugmented, each scored by the teacher on what it holds; and a fixed
    sample of them for validation."""
    from asttag.distill import window_scores
    from asttag.labels import audioset

    heldout = data / "heldout.jsonl"
    valid = data / "valid.jsonl"
    window = round(window_seconds * SAMPLE_RATE)
    if not heldout.exists():
        labels = audioset()
        lines = []
        for row in (r for r in read_corpus(corpus) if r["split"] == "heldout"):
            wave = read_clip(corpus, row)
            # A tail under a tenth of a window is left out: too little to score on its own.
            for start in range(0, max(1, len(wave) - window // 10), window):
                piece = wave[start : start + window]
                path = data / "heldout" / f"{row['clip']}.{start // window:02d}.flac"
                record = _saved_window(data, path, piece, window_scores(teacher, piece), labels)
                lines.append(json.dumps({**record, "package": row["package"], "kind": kind_of(row)}))
        _write_manifest(heldout, lines)
    if not valid.exists():
        lines = heldout.read_text("utf-8").splitlines()
        order = np.random.default_rng(0).permutation(len(lines))[:VALID_WINDOWS]
        _write_manifest(valid, [lines[i] for i in sorted(order)])
    return heldout, valid


def _in_shards(shards: Path, count: int, make: Callable[[int, range, list[str]], list[str]], *,
               what: str) -> list[str]:
    """The manifest lines of `count` windows built SHARD at a time by make(shard, indices,
    lines of the earlier shards). A finished shard's file is read back, not rebuilt, so a rerun
    builds only what an interruption left undone."""
    shards.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for shard in range(math.ceil(count / SHARD)):
        done = shards / f"{shard:04d}.jsonl"
        if not done.exists():
            records = make(shard, range(shard * SHARD, min(count, (shard + 1) * SHARD)), lines)
            atomic_write_text(done, "".join(r + "\n" for r in records))
            log.info("%s: shard %d done (%d windows)", what, shard, len(records))
        lines += done.read_text("utf-8").splitlines()
    return lines


def _saved_window(data: Path, path: Path, wave: np.ndarray, scores: np.ndarray, labels) -> dict:
    """Write a window's audio (16-bit FLAC) and return its manifest record (path under `data`)."""
    import soundfile as sf

    from asttag.distill import SoftTarget, soft_record

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, SAMPLE_RATE, subtype="PCM_16")
    return soft_record(SoftTarget(path, scores), labels, root=data)


def _write_manifest(path: Path, lines: list[str]) -> Path:
    from asttag.distill import LABEL_FILE, write_label_file
    from asttag.labels import audioset

    write_label_file(audioset(), path.parent / LABEL_FILE)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- training


def student_recipe(data: Path, *, epochs: int | None, seed: int = 0):
    """The default-student recipe pointed at the window manifests, with the build's seed (so
    builds with other seeds differ in their start as well as their windows: Ensemble-S)."""
    from asttag.recipes import load_recipe

    recipe = load_recipe(RECIPE)
    changes = {"data_dir": str(data / "train.jsonl"),
               "data": {"valid": str(data / "valid.jsonl"), "label_file": str(data / "labels.csv")},
               "seed": seed}
    if epochs is not None:
        changes["epochs"] = epochs
    return recipe.replace(**changes)


def balance_recipe(data: Path, start: Path, *, epochs: int, seed: int = 0):
    """Stage 3b: the distilled student from `start`, trained on with the engine's balanced
    sampler (the paper's weights over the teacher's scores: Speech-topped windows fall from 12%
    of the draws to 4%), BALANCE_LR halved each epoch after the first, its epochs averaged.
    Distillation draws windows as the corpus holds them, so the student learns the prior of a
    corpus that is mostly speech and music; this stage draws against it (measured:
    models/README.md, "Rebalancing")."""
    return student_recipe(data, epochs=epochs, seed=seed).replace(
        init=str(start), lr=BALANCE_LR, lr_by_init={}, warmup_steps=BALANCE_WARMUP, lr_decay=0.5,
        lr_decay_start=1, lr_decay_step=1, balanced_sampler=True, average_epochs=(1, epochs))


def train_student(run: Path, data: Path, *, epochs: int | None, device: str, workers: int,
                  seed: int = 0):
    """Stage 3: train, or go on with a started run (to more epochs when --epochs says so)."""
    return _train_stage(run, run / "train", lambda: student_recipe(data, epochs=epochs, seed=seed),
                        epochs=epochs, device=device, workers=workers)


def balance_student(run: Path, data: Path, start: Path, *, epochs: int, device: str, workers: int,
                    seed: int = 0):
    """Stage 3b (balance_recipe) from the distilled model `start`, or go on with it when started.

    A started stage keeps its epoch count: its averaging window and its halvings are set by it,
    so another count is refused rather than stretched (delete RUN/balance to run it anew)."""
    from asttag.recipes import load_recipe
    from asttag.rundir import RECIPE_FILE

    out = run / "balance"
    if (out / RECIPE_FILE).exists() and (ran := load_recipe(out / RECIPE_FILE).epochs) != epochs:
        raise SystemExit(f"{out}: the rebalancing stage was started for {ran} epochs, not {epochs}; "
                         "delete that folder to run it anew")
    return _train_stage(run, out, lambda: balance_recipe(data, start, epochs=epochs, seed=seed),
                        epochs=None, device=device, workers=workers)


def _train_stage(run: Path, out: Path, recipe: Callable[[], object], *, epochs: int | None, device: str,
                 workers: int):
    from asttag.recipes import load_recipe
    from asttag.rundir import RECIPE_FILE
    from asttag.training import Runtime, resume, train

    runtime = Runtime(device=device, workers=workers, cache=run / "cache")
    observer = progress_log()
    if not (out / RECIPE_FILE).exists():
        return train(recipe(), out, runtime=runtime, observer=observer)
    if epochs is not None:
        # The run directory's recipe is all resume reads: raising its epoch count extends it.
        recorded = load_recipe(out / RECIPE_FILE)
        if epochs != recorded.epochs:
            atomic_write_text(out / RECIPE_FILE, recorded.replace(epochs=epochs).to_yaml())
    return resume(out, runtime=runtime, observer=observer)


def progress_log(every: int = 25):
    """An engine observer logging the mean loss of every `every` steps and each epoch's record:
    a background run's progress, read from its log."""
    from asttag.training import Observer

    class Progress(Observer):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def epoch_started(self, epoch: int, *, epochs: int, steps: int) -> None:
            log.info("epoch %d/%d: %d steps", epoch, epochs, steps)

        def step_done(self, loss: float) -> None:
            self.losses.append(loss)
            if len(self.losses) % every == 0:
                log.info("step %d: loss %.4f", len(self.losses), float(np.mean(self.losses[-every:])))

        def epoch_done(self, record: dict) -> None:
            log.info("epoch done: %s", json.dumps(record))

    return Progress()


# --------------------------------------------------------------------------- evaluation


def evaluate(model_path: Path, heldout: Path, corpus: Path, *, device: str, checks: Path = CHECKS,
             families: Path = FAMILIES) -> dict:
    """Stage 4: the issue's quality figures for a model, on the held-out windows, `checks` and
    the held-out clips of `families`."""
    from asttag.hub import load_model
    from asttag.metrics import evaluate_scores

    model = load_model(str(model_path), device=device)
    student, teacher, meta = heldout_scores(model, heldout, device=device)
    names = model.labels.names
    speech, music = names.index("Speech"), names.index("Music")
    top3 = _top3_at_tag_defaults(model)
    teacher_top, student_top = teacher.argmax(axis=1), student.argmax(axis=1)
    result = {
        "model": str(model_path),
        "windows": len(meta),
        "top1_agreement": evaluate_scores(student, teacher).accuracy,
        "mAP_teacher_ge_0.3": evaluate_scores(student, (teacher >= POSITIVE).astype(np.float32)).mAP,
        "speech_top_on_heldout_speech": _share(student_top, teacher_top, speech),
        "music_top_on_heldout_music": _share(student_top, teacher_top, music),
        "by_source": _by_source(meta, student_top, teacher_top),
        "checks": heldout_checks(top3, corpus, checks=checks),
        "teacher_top_in_top3": teacher_top_checks(read_corpus(corpus), top3, corpus),
        "families": family_figures(read_families(families), read_corpus(corpus), top3, corpus),
    }
    result["checks_passed"] = sum(c["in_top3"] for c in result["checks"])
    return result


def heldout_scores(model, heldout: Path, *, device: str) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The model's scores (a model or an ensemble) and the teacher's on the held-out windows of
    `heldout` (windows, classes), and the windows' manifest records."""
    from asttag.datasets import load_dataset
    from asttag.inference import predict_examples

    examples = load_dataset("manifest", heldout, label_file=heldout.parent / "labels.csv").train
    student = predict_examples(model, examples, device=device)
    teacher = np.stack([e.soft for e in examples])
    meta = [json.loads(line) for line in heldout.read_text("utf-8").splitlines() if line.strip()]
    return student, teacher, meta


def _share(student_top: np.ndarray, teacher_top: np.ndarray, label: int) -> dict:
    """Of the windows whose teacher top class is `label`, how many have it as the student's."""
    mine = teacher_top == label
    return {"windows": int(mine.sum()), "share": float((student_top[mine] == label).mean()) if mine.any() else None}


def _by_source(meta: list[dict], student_top: np.ndarray, teacher_top: np.ndarray) -> dict:
    out = {}
    for package in sorted({m["package"] for m in meta}):
        mine = np.array([m["package"] == package for m in meta])
        out[package] = {"windows": int(mine.sum()),
                        "top1_agreement": float((student_top[mine] == teacher_top[mine]).mean())}
    return out


def _top3_at_tag_defaults(model) -> Callable[[Path], list[str]]:
    """A clip's top 3 labels as `asttag tag` gives them at its default settings."""
    from asttag.tagger import Tagger

    tagger = Tagger(model, device="cpu", top_k=3)
    return lambda path: [tag.label for tag in tagger.tag(path).tags]


def heldout_checks(top3: Callable[[Path], list[str]], corpus: Path, *, checks: Path = CHECKS) -> list[dict]:
    """The held-out everyday sounds of `checks` (clip, expected): is the expected class among
    the clip's `top3`?"""
    import csv

    results = []
    with checks.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            top = top3(corpus / row["clip"])
            results.append({"clip": row["clip"], "expected": row["expected"], "top3": top,
                            "in_top3": row["expected"] in top})
    return results


def teacher_top_checks(rows: list[dict], top3: Callable[[Path], list[str]], corpus: Path) -> dict:
    """The checks' wider sibling, chosen by a rule rather than by hand: every held-out clip whose
    teacher top class over the clip is neither Speech nor Music (those have their own figures)
    and scores at least 0.5. Is that class among the clip's `top3`? Ten hand-picked clips move by
    a check or two between runs; this counts every such clip the held-out sources have."""
    per_package: dict[str, list[bool]] = {}
    missed = []
    for row in rows:
        if row["split"] != "heldout" or not row["top"] or kind_of(row) != "other":
            continue
        label, score = row["top"][0]
        if score < TEACHER_SURE:
            continue
        top = top3(corpus / row["clip"])
        per_package.setdefault(row["package"], []).append(label in top)
        if label not in top:
            missed.append({"clip": row["clip"], "teacher_top": label, "top3": top})
    hits = [hit for package in per_package.values() for hit in package]
    return {"clips": len(hits), "in_top3": sum(hits),
            "share": sum(hits) / len(hits) if hits else None,
            "by_package": {p: {"clips": len(v), "in_top3": sum(v)} for p, v in sorted(per_package.items())},
            "missed": missed}


def read_families(path: Path = FAMILIES) -> list[dict]:
    """The held-out clips with the sound family and the AudioSet classes each really is (from
    its package, folder and file name; `expected` lists classes separated by "; ", any of which
    is right), checked against AudioSet's class names and FAMILY_NAMES."""
    import csv

    from asttag.labels import audioset

    names = set(audioset().names)
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            expected = [name.strip() for name in row["expected"].split(";")]
            unknown = [name for name in expected if name not in names]
            if row["family"] not in FAMILY_NAMES:
                raise SystemExit(f"{path}:{line}: family {row['family']!r} is not one of {', '.join(FAMILY_NAMES)}")
            if unknown:
                raise SystemExit(f"{path}:{line}: classes not in AudioSet: {unknown}")
            rows.append({"clip": row["clip"], "family": row["family"], "expected": expected})
    return rows


def family_figures(families: list[dict], manifest: list[dict], top3: Callable[[Path], list[str]],
                   corpus: Path) -> dict:
    """Top-1 and top-3 per sound family on the held-out clips of `families`, the student's from
    `top3` (its tags at `asttag tag` defaults) beside the teacher's on the same clips (its top 3
    over the clip, in the corpus manifest): a clip is right at k when one of its expected classes
    is among the first k. Also how many clips without speech (every family but speech) have
    Speech in the top 3. A listed clip that is not a held-out clip of this corpus stops the
    evaluation: the figures would not be on audio training never heard."""
    by_clip = {row["clip"]: row for row in manifest}
    clips, per_family = [], {family: [] for family in FAMILY_NAMES}
    for check in families:
        row = by_clip.get(check["clip"])
        if row is None or row["split"] != "heldout":
            raise SystemExit(f"{check['clip']}: listed in the held-out families but not a held-out clip of {corpus}")
        result = {**check, "student": top3(corpus / check["clip"]), "teacher": [name for name, _ in row["top"]][:3]}
        clips.append(result)
        per_family[check["family"]].append(result)

    def right(results: list[dict], who: str, k: int) -> float | None:
        hits = [bool(set(r[who][:k]) & set(r["expected"])) for r in results]
        return sum(hits) / len(hits) if hits else None

    def speech_in_top3(results: list[dict], who: str) -> float | None:
        return sum("Speech" in r[who] for r in results) / len(results) if results else None

    without_speech = [r for r in clips if r["family"] != "speech"]
    return {
        "by_family": {family: {"clips": len(results),
                               **{f"{who}_top{k}": right(results, who, k) for who in ("student", "teacher") for k in (1, 3)}}
                      for family, results in per_family.items()},
        "speech_in_top3_without_speech": {"clips": len(without_speech),
                                          "student": speech_in_top3(without_speech, "student"),
                                          "teacher": speech_in_top3(without_speech, "teacher")},
        "clips": clips,
    }


def family_table(figures: dict) -> str:
    """The per-family figures as the model card's Markdown table."""

    def pct(share: float | None) -> str:
        return "-" if share is None else f"{100 * share:.0f}%"

    lines = ["| family | clips | student top 1 | teacher top 1 | student top 3 | teacher top 3 |",
             "|---|---|---|---|---|---|"]
    for family, f in figures["by_family"].items():
        lines.append(f"| {family} | {f['clips']} | {pct(f['student_top1'])} | {pct(f['teacher_top1'])} | "
                     f"{pct(f['student_top3'])} | {pct(f['teacher_top3'])} |")
    speech = figures["speech_in_top3_without_speech"]
    lines.append(f"| Speech in the top 3 of clips without speech | {speech['clips']} | | | "
                 f"{pct(speech['student'])} | {pct(speech['teacher'])} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- export and speed


def shipped_model(run_dir: Path) -> Path:
    """The model a run yields: the weight average of the recipe's last epochs where it averages
    (validation on a few hundred held-out windows is too noisy to pick one epoch by), else the
    best epoch."""
    from asttag.rundir import AVERAGED_FILE, BEST_FILE

    averaged = run_dir / AVERAGED_FILE
    return averaged if averaged.exists() else run_dir / BEST_FILE


def export(model_path: Path, out: Path, *, heldout: Path) -> Path:
    """The model, or ensemble bundle, with fp16 weights (half the bytes; loading casts them back
    to fp32) and the event threshold calibrated on the held-out windows of `heldout` (a run's
    data/heldout.jsonl): the one `asttag tag --events` uses. It replaces any threshold training
    recorded, which was chosen on the few validation windows and before the weights were
    halved."""
    from asttag.checkpoint import save
    from asttag.ensemble import Ensemble, save_bundle
    from asttag.hub import load_model
    from asttag.thresholds import KEY

    if not heldout.is_file():
        raise SystemExit(f"{heldout}: no held-out windows to calibrate the event threshold on; "
                         "`default_model.py evaluate MODEL --corpus CORPUS --run RUN` builds them")
    model = load_model(str(model_path), device="cpu")  # loading keeps the file's `extra` on the model
    # Rounded to fp16 and back: the threshold is chosen on the scores the shipped file gives
    # (halving again is exact, so the file holds these very weights).
    model = model.half().float()
    threshold = event_threshold(model, heldout)
    log.info("event threshold %.2f: %s", threshold.value, threshold.rule)
    extra = {**model.extra, "weights": "fp16", KEY: threshold.to_dict()}
    write = save_bundle if isinstance(model, Ensemble) else save
    return write(model.half(), out, extra=extra)


def event_threshold(model, heldout: Path):
    """The event threshold with the best micro-F1 of the model's scores against the teacher's
    on the held-out windows (thresholds.calibrate: teacher scores >= 0.5 are the positives)."""
    from asttag.thresholds import calibrate

    student, teacher, meta = heldout_scores(model, heldout, device="cpu")
    packages = len({m["package"] for m in meta})
    return calibrate(student, teacher, held_out=f"{len(meta):,} held-out windows from {packages} packages "
                                                "(default_model.py's held-out split; the teacher's scores)")


CANDIDATES = {
    # name: (preset, depth, mel bins, frames, stride)
    "tiny224 d12 128mel s16": ("tiny224", 12, 128, 1024, 16),
    "tiny224 d12 128mel s12": ("tiny224", 12, 128, 1024, 12),
    "tiny224 d12 128mel 512fr s16": ("tiny224", 12, 128, 512, 16),
    "small224 d6 128mel s16": ("small224", 6, 128, 1024, 16),
    "tiny224 d12 64mel s16": ("tiny224", 12, 64, 1024, 16),
    "tiny224 d8 64mel s16": ("tiny224", 8, 64, 1024, 16),
    "tiny224 d6 128mel s16": ("tiny224", 6, 128, 1024, 16),
    "tiny224 d6 64mel s16": ("tiny224", 6, 64, 1024, 16),
    "tiny224 d4 64mel s16": ("tiny224", 4, 64, 1024, 16),
}


def measure(out_dir: Path, *, minutes: float = 10.0) -> list[dict]:
    """Speed and size of each candidate: the tagger at `asttag tag`'s defaults (fp32, batch 8,
    hop = window) on a generated file; fp16 weights on disk.

    Wall time depends on what else runs on the machine, and so does the CPU time of two
    threads (they spin waiting for each other on a busy machine). The CPU time of one thread
    is the steadier figure: its speed is a lower bound for two idle cores.
    """
    import soundfile as sf
    import torch

    from asttag.checkpoint import save
    from asttag.features import FeatureConfig
    from asttag.hub import load_model
    from asttag.labels import audioset
    from asttag.model import AST, ASTConfig
    from asttag.tagger import Tagger

    out_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    audio = out_dir / "tone_and_noise.flac"
    seconds = minutes * 60
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    noise = np.random.default_rng(0).standard_normal(t.size)
    sf.write(str(audio), (0.1 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32), SAMPLE_RATE)
    table = []
    for name, (preset, depth, mel, frames, stride) in CANDIDATES.items():
        config = ASTConfig.from_preset(preset, depth=depth, num_mel_bins=mel, target_length=frames,
                                       stride=(stride, stride))
        model = AST(config, features=FeatureConfig(num_mel_bins=mel, target_length=frames), labels=audioset())
        path = save(model.half(), out_dir / "candidate.safetensors")
        tagger = Tagger(load_model(str(path)), device="cpu")
        tagger.tag(audio)  # warm-up: first-call allocations are not the steady state
        wall = _timed(tagger, audio, threads=threads)[0]
        one_thread = _timed(tagger, audio, threads=1)[1]
        table.append({
            "candidate": name, "tokens": config.num_patches, "gflops_per_window": round(config.flops_per_window / 1e9, 2),
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "mb_fp16": round(path.stat().st_size / 1e6, 1), "threads": threads,
            "x_realtime_wall": round(seconds / wall), "x_realtime_1_thread_cpu": round(seconds / one_thread),
            "load_average": round(os.getloadavg()[0], 1),
        })
        log.info("%s", table[-1])
    return table


def _timed(tagger, audio: Path, *, threads: int) -> tuple[float, float]:
    """Wall and CPU seconds of tagging `audio` with `threads` torch threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        tagger.tag(audio)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- command line


def corpus_teacher(args: argparse.Namespace):
    """YAMNet from --teacher, else the file the corpus was scored with, on one thread."""
    from asttag.yamnet import YamnetTeacher

    teacher_file = args.teacher or Path(json.loads((args.corpus / "packages.json").read_text())["teacher"]["file"])
    return YamnetTeacher.from_file(teacher_file, num_threads=1)


def build(args: argparse.Namespace) -> dict:
    from threadpoolctl import threadpool_limits

    from asttag.recipes import load_recipe

    teacher = corpus_teacher(args)
    window_seconds = load_recipe(RECIPE).target_length / 100  # 10 ms frames
    data = args.run / "data"
    started = time.time()
    # np.convolve (the rooms) calls BLAS once per output sample: beside other work, OpenBLAS's
    # threads made a room 5x to 70x slower than one thread does (0.14-1.6 s against 0.022 s).
    with threadpool_limits(limits=1, user_api="blas"):
        build_train_windows(args.corpus, data, teacher, count=args.windows, window_seconds=window_seconds,
                            seed=args.seed, mix_p=args.mix, speed_p=args.speed,
                            procedural=args.procedural, procedural_cap=args.procedural_cap,
                            climbs=args.climbs, climb_recorded=args.climb_recorded)
        heldout, _ = build_heldout_windows(args.corpus, data, teacher, window_seconds=window_seconds)
    log.info("windows ready in %.0f s", time.time() - started)
    stages: dict = {}
    if args.start is None:
        result = train_student(args.run, data, epochs=args.epochs, device=args.device, workers=args.workers,
                               seed=args.seed)
        stages["training"] = result.summary
        model = shipped_model(result.run_dir)
    else:
        model = args.start
    if args.balance_epochs:
        # The start model's families (distilled here or given) beside the result's: what the stage changed.
        stages["distilled"] = {"model": str(model), "families": evaluate(
            model, heldout, args.corpus, device=args.device)["families"]["by_family"]}
        result = balance_student(args.run, data, model, epochs=args.balance_epochs, device=args.device,
                                 workers=args.workers, seed=args.seed)
        stages["balance"] = result.summary
        model = shipped_model(result.run_dir)
    evaluation = {**evaluate(model, heldout, args.corpus, device=args.device), **stages}
    atomic_write_text(args.run / "evaluation.json", json.dumps(evaluation, indent=2) + "\n")
    print(family_table(evaluation["families"]), file=sys.stderr)
    return evaluation


def evaluate_command(args: argparse.Namespace) -> dict:
    """`evaluate`: a model's figures on a run's held-out windows, built first (with the teacher)
    when the run has none, so any model can be measured on a corpus without a training run."""
    from asttag.recipes import load_recipe

    heldout = args.run / "data" / "heldout.jsonl"
    if not heldout.exists():
        build_heldout_windows(args.corpus, args.run / "data", corpus_teacher(args),
                              window_seconds=load_recipe(RECIPE).target_length / 100)
    evaluation = evaluate(args.model, heldout, args.corpus, device=args.device, checks=args.checks,
                          families=args.families)
    print(family_table(evaluation["families"]), file=sys.stderr)
    return evaluation


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="windows, teacher, training, evaluation (resumable)")
    b.add_argument("--corpus", type=Path, required=True, help="the built corpus (default_corpus.py)")
    b.add_argument("--run", type=Path, required=True, help="working directory: windows, run, evaluation")
    b.add_argument("--teacher", type=Path, help="YAMNet .tflite (default: the corpus's)")
    b.add_argument("--windows", type=int, default=40000, help="augmented training windows (one epoch)")
    b.add_argument("--mix", type=float, default=0.5, help="share of windows mixing two clips")
    b.add_argument("--speed", type=float, default=0.5, help="share of clips with a speed/pitch change")
    b.add_argument("--procedural", type=int, default=60000,
                   help="procedural sounds to generate and score (about a third are kept; 0: none)")
    b.add_argument("--procedural-cap", type=int, default=PROCEDURAL_CAP,
                   help="procedural windows kept per teacher top class")
    b.add_argument("--climbs", type=int, default=12,
                   help="greedy climbs of procedural sounds per class that fewer than "
                        f"{CLIMB_BELOW} recorded windows hold (the teacher judges each edit)")
    b.add_argument("--climb-recorded", action="store_true",
                   help="climbs also start from recorded windows, for the classes the teacher does not "
                        "yet hear in them (a run directory keeps the choice it was built with)")
    b.add_argument("--epochs", type=int, help="train to this many epochs (default: the recipe's)")
    b.add_argument("--balance-epochs", type=int, default=BALANCE_EPOCHS,
                   help="epochs of the rebalancing stage (balanced sampler) after distillation or from "
                        "--start (0: none)")
    b.add_argument("--start", type=Path,
                   help="rebalance this distilled model instead of distilling one (the windows are still built)")
    b.add_argument("--seed", type=int, default=0, help="draws the windows and starts the student")
    b.add_argument("--device", default="auto")
    b.add_argument("--workers", type=int, default=0, help="decoding processes for training")
    e = commands.add_parser("evaluate", help="the quality figures of any model on the held-out windows")
    e.add_argument("model", type=Path)
    e.add_argument("--corpus", type=Path, required=True)
    e.add_argument("--run", type=Path, required=True,
                   help="a build's working directory (its held-out windows; built when missing)")
    e.add_argument("--teacher", type=Path, help="YAMNet .tflite for missing held-out windows (default: the corpus's)")
    e.add_argument("--checks", type=Path, default=CHECKS, help="the everyday checks (CSV: clip, expected)")
    e.add_argument("--families", type=Path, default=FAMILIES,
                   help="held-out clips with their sound family and AudioSet classes (CSV: clip, family, expected)")
    e.add_argument("--device", default="cpu")
    x = commands.add_parser("export", help="write a model with fp16 weights and a calibrated event threshold "
                                           "(the shipped file)")
    x.add_argument("model", type=Path)
    x.add_argument("--run", type=Path, required=True,
                   help="a build's working directory: the event threshold is chosen on its held-out windows")
    x.add_argument("--out", type=Path, required=True)
    m = commands.add_parser("measure", help="speed and size of the student candidates")
    m.add_argument("--out", type=Path, required=True, help="folder for the test file and the table")
    m.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.command == "build":
        if args.balance_epochs < 0:
            b.error(f"--balance-epochs {args.balance_epochs}: must be 0 or more")
        if args.start is not None and not args.balance_epochs:
            b.error("--start gives the rebalancing stage its model: it needs --balance-epochs above 0")
        if args.start is not None and not args.start.is_file():
            b.error(f"--start {args.start}: no such model file")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    commands: dict[str, Callable[[], object]] = {
        "build": lambda: build(args),
        "evaluate": lambda: evaluate_command(args),
        "export": lambda: str(export(args.model, args.out, heldout=args.run / "data" / "heldout.jsonl")),
        "measure": lambda: measure(args.out, minutes=args.minutes),
    }
    print(json.dumps(commands[args.command](), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
