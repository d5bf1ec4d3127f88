"""B7: a linear probe against full fine-tuning from the same model, accuracy and time.

There is no labelled real data set offline, so the data are GENERATED: five families of
synthetic sounds (hum, whistle, chirp, clicks, hiss) with random pitch, rate, level and
background noise (SNR -10 to 5 dB), clips of 0.96 s at 16 kHz (one window of the default model, so
both methods see each clip whole and are scored alike), a folder data set with one subfolder per
class. Both methods start from the same model (default: the embedded default model) and are
scored on the same held-out quarter of the clips (accuracy).

    python benchmarks/bench_probe.py                       # 20 clips per class, 10 epochs
    python benchmarks/bench_probe.py --per-class 40 --epochs 20
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
CLASSES = ("hum", "whistle", "chirp", "clicks", "hiss")


def sound(kind: str, rng: np.random.Generator, seconds: float = 0.96) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == "hum":
        f0 = rng.uniform(60, 220)
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    elif kind == "whistle":
        f0 = rng.uniform(900, 3000)
        x = np.sin(2 * np.pi * f0 * t + rng.uniform(1, 20) * np.sin(2 * np.pi * rng.uniform(3, 7) * t))
    elif kind == "chirp":
        f0, f1 = rng.uniform(200, 800), rng.uniform(2000, 6000)
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    elif kind == "clicks":
        x = np.zeros_like(t)
        x[:: int(RATE / rng.uniform(4, 25))] = 1.0
        x = np.convolve(x, np.exp(-np.arange(80) / 8.0), mode="same")
    else:  # hiss: noise through a random band
        spectrum = np.fft.rfft(rng.standard_normal(t.size))
        freqs = np.fft.rfftfreq(t.size, 1 / RATE)
        low = rng.uniform(1000, 4000)
        spectrum[(freqs < low) | (freqs > low * rng.uniform(1.5, 2.5))] = 0
        x = np.fft.irfft(spectrum, t.size)
    x = x / (np.abs(x).max() + 1e-9)
    noise = rng.standard_normal(t.size)
    snr_db = rng.uniform(-10, 5)
    noise *= np.sqrt((x**2).mean() / (noise**2).mean() / 10 ** (snr_db / 10))
    y = x + noise
    return (rng.uniform(0.05, 0.5) * y / np.abs(y).max()).astype(np.float32)


def make_dataset(root: Path, *, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            sf.write(str(root / kind / f"{kind}_{i:03d}.wav"), sound(kind, rng), RATE)


def run_probe(data: Path, model: str, out: Path) -> tuple[float, float]:
    import asttag
    from asttag.datasets import load_dataset
    from asttag.probe import train_probe

    started = time.perf_counter()
    net = asttag.load_model(model, device="cpu")
    result = train_probe(net, load_dataset("folder", data, valid_fraction=0.25), device="cpu",
                         workers=0)
    seconds = time.perf_counter() - started
    assert result.valid_metrics is not None
    return result.valid_metrics.accuracy, seconds


def run_finetune(data: Path, model: str, out: Path, epochs: int) -> tuple[float, float]:
    import json

    started = time.perf_counter()
    import asttag

    # The folder recipe's numbers are AST base's: the model's own input and masks sized to it.
    net = asttag.load_model(model, device="cpu")
    f, stride = net.features, net.config.stride
    sets = {"num_mel_bins": f.num_mel_bins, "target_length": f.target_length,
            "norm_mean": f.mean, "norm_std": f.std, "freqm": f.num_mel_bins // 5,
            "timem": f.target_length // 10, "lr_decay_start": 1000, "average_epochs": "null"}
    command = [sys.executable, "-m", "asttag", "finetune", "folder", "-d", str(data),
               "--init", model, "--epochs", str(epochs), "--lr", "1e-4", "--batch-size", "8",
               "--fstride", str(stride[0]), "--tstride", str(stride[1]), "-D", "valid_fraction=0.25",
               *[arg for k, v in sets.items() for arg in ("--set", f"{k}={v}")],
               "--workers", "0", "--device", "cpu", "-q", "-o", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(proc.stderr)
    summary = json.loads(proc.stdout)
    return summary["last"]["accuracy"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_dataset(data, per_class=args.per_class, seed=args.seed)
        probe_acc, probe_s = run_probe(data, args.model, Path(tmp) / "probe.safetensors")
        tune_acc, tune_s = run_finetune(data, args.model, Path(tmp) / "run", args.epochs)
    print(f"generated data: {len(CLASSES)} classes x {args.per_class} clips of 0.96 s, 25% held out; "
          f"model {args.model}; load average {os.getloadavg()[0]:.1f}")
    print("| method | valid accuracy | wall time (s) |")
    print("|---|---|---|")
    print(f"| linear probe | {probe_acc:.3f} | {probe_s:.1f} |")
    print(f"| full fine-tuning, {args.epochs} epochs | {tune_acc:.3f} | {tune_s:.1f} |")
    print(f"fine-tuning / probe time: {tune_s / probe_s:.1f}x")


if __name__ == "__main__":
    main()
