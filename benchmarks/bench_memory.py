"""Peak memory and speed of `asttag tag` on long 48 kHz stereo recordings.

Generates 10-minute, 1-hour and 3-hour 48 kHz stereo WAV files, tags each with the real CLI in
its own process, and reads that process's peak resident memory (wait4's ru_maxrss). The files
are read in blocks, so peak memory must stay flat as the recording grows; the script prints a
table, the ratio of the largest to the smallest peak, and speed as a multiple of real time (the
tagging alone, as the CLI reports it; model loading and imports are not in it).

The model is a randomly initialised AST with the real input (128 mel bins x 1024 frames, so
features, windows and batches are full size) and a small encoder (tiny224 width, 2 blocks), so
the run takes minutes on 2 CPU cores. Nothing is downloaded.

    python benchmarks/bench_memory.py                 # 10, 60 and 180 minutes
    python benchmarks/bench_memory.py --minutes 1 5   # a quick look
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATE, CHANNELS = 48000, 2
SPEED = re.compile(r"in ([\d.]+) s \(([\d.]+)x real time\)")


def write_recording(path: Path, minutes: float, *, seed: int = 0, rate: int = RATE,
                    channels: int = CHANNELS) -> Path:
    """Tones that change every few seconds over quiet noise, written a minute at a time."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * rate)
    with sf.SoundFile(str(path), "w", rate, channels, subtype="PCM_16") as f:
        for start in range(0, total, 60 * rate):
            t = np.arange(start, min(start + 60 * rate, total)) / rate
            freq = 200 + 300 * (np.floor(t / 7) % 10)
            mono = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
            f.write(np.stack([mono, 0.8 * mono][:channels], axis=1).astype(np.float32))
    return path


def write_model(path: Path, *, depth: int, preset: str = "tiny224", **config: object) -> Path:
    """A randomly initialised AudioSet-sized AST (seed 0) saved as an asttag checkpoint."""
    import torch

    from asttag import checkpoint
    from asttag.labels import audioset
    from asttag.model import AST, ASTConfig

    torch.manual_seed(0)
    config = ASTConfig.from_preset(preset, depth=depth, num_classes=527, **config)
    return checkpoint.save(AST(config, labels=audioset()), path)


def measure(recording: Path, model: Path, *, threads: int, batch_size: int,
            workers: int) -> dict:
    """Tag one file in a fresh process; its peak RSS, wall time and tagging speed."""
    command = [sys.executable, "-m", "asttag", "tag", str(recording), "-m", str(model),
               "-f", "csv", "--device", "cpu", "--threads", str(threads),
               "--batch-size", str(batch_size), "--workers", str(workers)]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"tagging {recording} failed:\n{stderr}")
    match = SPEED.search(stderr)
    if match is None:
        raise SystemExit(f"no speed in the CLI's summary:\n{stderr}")
    return {"peak_mb": usage.ru_maxrss / 1024, "wall_s": wall, "tag_s": float(match[1]),
            "speed": float(match[2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60, 180])
    parser.add_argument("--dir", type=Path, help="where to write the recordings (default: a temp dir)")
    parser.add_argument("--depth", type=int, default=2, help="encoder blocks of the test model")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        model = write_model(folder / "bench-model.safetensors", depth=args.depth)
        rows = []
        for minutes in args.minutes:
            recording = folder / f"bench-{minutes:g}min-48k-stereo.wav"
            if not recording.exists():
                write_recording(recording, minutes)
            result = measure(recording, model, threads=args.threads, batch_size=args.batch_size,
                             workers=args.workers)
            decoded_mb = minutes * 60 * RATE * CHANNELS * 4 / 2**20
            rows.append((minutes, decoded_mb, result))
            print(f"  {minutes:g} min done: {result['peak_mb']:.0f} MB peak, "
                  f"{result['speed']:.1f}x real time", file=sys.stderr)

    print(f"asttag tag, 48 kHz stereo WAV, tiny224 x {args.depth} blocks, 128 x 1024 input, "
          f"{args.threads} threads, batch {args.batch_size}, {args.workers} workers")
    print(f"{'recording':>10} | {'whole file as float32':>21} | {'peak RSS':>9} | "
          f"{'tagging':>8} | {'speed':>15}")
    for minutes, decoded_mb, r in rows:
        print(f"{minutes:>6g} min | {decoded_mb:>18.0f} MB | {r['peak_mb']:>6.0f} MB | "
              f"{r['tag_s']:>6.1f} s | {r['speed']:>7.1f}x real time")
    peaks = [r["peak_mb"] for _, _, r in rows]
    print(f"peak RSS, longest / shortest recording: {peaks[-1] / peaks[0]:.3f} "
          f"(largest / smallest of all: {max(peaks) / min(peaks):.3f})")


if __name__ == "__main__":
    main()
