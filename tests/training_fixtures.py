"""Generated data sets and tiny recipes for the training, inference and CLI tests.

Five clearly different synthetic sound types (low tone, high tone, noise burst, rising chirp,
click train), each clip with its own random pitch, level, onset and background, written in the
official layouts. Nothing is downloaded.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

SOUNDS = ("low_tone", "high_tone", "noise_burst", "chirp", "clicks")
RATE = 16000


def synth(kind: str, rng: np.random.Generator, *, seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    """One clip of a sound type, with random pitch, level, onset and background noise."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    if kind == "low_tone":
        wave = np.sin(2 * np.pi * rng.uniform(250, 400) * t)
    elif kind == "high_tone":
        wave = np.sin(2 * np.pi * rng.uniform(2500, 3500) * t)
    elif kind == "noise_burst":
        wave = rng.standard_normal(n) * (t % 0.25 < 0.12)
    elif kind == "chirp":
        f0, f1 = rng.uniform(200, 500), rng.uniform(3000, 5000)
        wave = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    elif kind == "clicks":
        # 4 ms broadband bursts, 8-15 a second: a click train a 25 ms frame clearly sees.
        burst = int(0.004 * rate)
        wave = rng.standard_normal(n) * (np.arange(n) % int(rate / rng.uniform(8, 15)) < burst)
    else:
        raise ValueError(kind)
    start = int(rng.uniform(0, 0.2) * n)
    wave = np.concatenate([np.zeros(start), wave[: n - start]])
    wave = rng.uniform(0.2, 0.6) * wave + rng.uniform(0.001, 0.02) * rng.standard_normal(n)
    return np.clip(wave, -1, 1).astype(np.float32)


def write_clip(path: Path, kind: str, seed: int, *, rate: int = RATE, seconds: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), synth(kind, np.random.default_rng(seed), seconds=seconds, rate=rate), rate)
    return path


def make_esc50(root: Path, *, per_fold: int = 2, classes: int = 5, rate: int = RATE) -> Path:
    """ESC-50 release layout: audio/*.wav and meta/esc50.csv, five folds."""
    rows = []
    for fold in range(1, 6):
        for target in range(classes):
            for take in range(per_fold):
                name = f"{fold}-{100 * target + take}-A-{target}.wav"
                write_clip(root / "audio" / name, SOUNDS[target], seed=fold * 1000 + target * 10 + take, rate=rate)
                rows.append([name, fold, target, SOUNDS[target], "False", f"{target}{take}", "A"])
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(rows)
    return root


def make_speechcommands(root: Path, *, per_word: int = 4) -> Path:
    """Speech Commands v0.02 layout: word folders, split lists, _background_noise_."""
    words = SOUNDS[:3]
    valid, test = [], []
    for w, word in enumerate(words):
        for i in range(per_word):
            relative = f"{word}/clip{i}_nohash_0.wav"
            write_clip(root / relative, word, seed=100 * w + i)
            (valid if i == 0 else test if i == 1 else []).append(relative)
    write_clip(root / "_background_noise_" / "white.wav", "noise_burst", seed=7)
    (root / "validation_list.txt").write_text("\n".join(valid) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


def make_audioset(root: Path, *, clips: int = 8) -> tuple[Path, Path]:
    """AudioSet layout: segments CSVs, clips named by YouTube id, a label CSV; and an AST JSON
    manifest of the same clips. Returns (segments folder, label file)."""
    mids = ["/m/low", "/m/high", "/m/noise"]
    label_file = root / "labels.csv"
    root.mkdir(parents=True, exist_ok=True)
    label_file.write_text("index,mid,display_name\n" + "".join(
        f"{i},{mid},{SOUNDS[i]}\n" for i, mid in enumerate(mids)))
    header = "# Segments csv\n# num_ytids=0\n# YTID, start_seconds, end_seconds, positive_labels\n"
    entries = []
    for split, offset in (("balanced_train_segments.csv", 0), ("unbalanced_train_segments.csv", 100),
                          ("eval_segments.csv", 200)):
        lines = []
        for i in range(clips):
            ytid = f"yt{offset + i:09d}"
            classes = [i % 3] if i % 4 else [i % 3, (i + 1) % 3]
            path = root / "clips" / f"{ytid}_0.000_1.000.wav"
            write_clip(path, SOUNDS[classes[0]], seed=offset + i)
            lines.append(f'{ytid}, 0.000, 1.000, "{",".join(mids[c] for c in classes)}"\n')
            if split != "eval_segments.csv":
                entries.append({"wav": str(path.relative_to(root)), "labels": ",".join(mids[c] for c in classes)})
        (root / split).write_text(header + "".join(lines))
    (root / "train.json").write_text(json.dumps({"data": entries}))
    return root, label_file


def make_folder(root: Path, *, per_class: int = 4) -> Path:
    """One subfolder per class."""
    for c, kind in enumerate(SOUNDS[:3]):
        for i in range(per_class):
            write_clip(root / kind / f"{i}.wav", kind, seed=10 * c + i)
    return root


def make_manifests(root: Path, *, per_class: int = 3) -> tuple[Path, Path]:
    """A CSV manifest with labels and a JSON-lines manifest with soft scores (distillation)."""
    rows, lines = [], []
    for c, kind in enumerate(SOUNDS[:3]):
        for i in range(per_class):
            path = write_clip(root / "clips" / f"{kind}{i}.wav", kind, seed=50 + 10 * c + i)
            rows.append([f"clips/{path.name}", kind])
            scores = {k: 0.1 for k in SOUNDS[:3]} | {kind: 0.8}
            lines.append(json.dumps({"path": f"clips/{path.name}", "scores": scores}))
    with open(root / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels"])
        writer.writerows(rows)
    (root / "soft.jsonl").write_text("\n".join(lines) + "\n")
    return root / "train.csv", root / "soft.jsonl"


def tiny_recipe(path: Path, **overrides) -> Path:
    """A recipe YAML for a tiny AST on 1 s clips (64 mel bins, 100 frames): trains in seconds."""
    recipe = {
        "name": "tiny",
        "dataset": "esc50",
        "init": "none",
        "size": "tiny224",
        "model": {"embed_dim": 64, "depth": 2, "num_heads": 4},
        "stride": [16, 16],
        "num_mel_bins": 64,
        "target_length": 100,
        "norm_mean": -6.6268077,
        "norm_std": 5.358466,
        "epochs": 2,
        "batch_size": 8,
        "lr": 1.0e-3,
        "loss": "ce",
        "precision": "fp32",
        **overrides,
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def esc_recipe(tmp_path: Path, data_dir: Path, **overrides):
    """The tiny recipe (as a Recipe) on the ESC-50-layout set at `data_dir`, fold 1 held out."""
    from asttag.recipes import load_recipe

    return load_recipe(tiny_recipe(tmp_path / "recipe.yaml", **overrides)).replace(
        data_dir=str(data_dir), data={"fold": 1})


def finetune_args(esc: Path, recipe: Path, out: Path, *extra: str) -> list[str]:
    """`asttag finetune` of the tiny recipe on fold 1 of `esc`, quiet, on the CPU."""
    return ["finetune", "esc50", "-d", str(esc), "--recipe", str(recipe), "--fold", "1", "-q",
            "--device", "cpu", "-o", str(out), *extra]


def same_weights(a: Path, b: Path) -> bool:
    """Whether two safetensors files hold the same tensors, bit for bit."""
    import torch
    from safetensors.torch import load_file

    first, second = load_file(str(a)), load_file(str(b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
