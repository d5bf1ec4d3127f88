"""Peak memory and speed of `asttag tag` on long 48 kHz stereo recordings.

Generates 10-minute, 1-hour and 3-hour 48 kHz stereo WAV files (or, with `--container m4a`, AAC
in .m4a, decoded by FFmpeg through PyAV instead of libsndfile), tags each with the real CLI in
its own process, and reads that process's peak resident memory (wait4's ru_maxrss). The files
are read in blocks, so peak memory must stay flat as the recording grows; the script prints a
table, the ratio of the largest to the smallest peak, and speed as a multiple of real time (the
tagging alone, as the CLI reports it; model loading and imports are not in it).

The model is a randomly initialised AST with the real input (128 mel bins x 1024 frames, so
features, windows and batches are full size) and a small encoder (tiny224 width, 2 blocks), so
the run takes minutes on 2 CPU cores. Nothing is downloaded.

    python benchmarks/bench_memory.py                 # 10, 60 and 180 minutes
    python benchmarks/bench_memory.py --minutes 1 5   # a quick look
    python benchmarks/bench_memory.py --minutes 10 180 --container m4a   # FFmpeg's path
"""

from __future__ import annotations

import argparse
import math
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


def signal(minutes: float, *, seed: int = 0, rate: int = RATE, channels: int = CHANNELS):
    """Tones that change every few seconds over quiet noise: (n, channels) float32, a minute at
    a time."""
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * rate)
    for start in range(0, total, 60 * rate):
        t = np.arange(start, min(start + 60 * rate, total)) / rate
        freq = 200 + 300 * (np.floor(t / 7) % 10)
        mono = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
        yield np.stack([mono, 0.8 * mono][:channels], axis=1).astype(np.float32)


def write_recording(path: Path, minutes: float, *, seed: int = 0, rate: int = RATE,
                    channels: int = CHANNELS) -> Path:
    """The signal as 16-bit WAV (libsndfile's path) or AAC in .m4a (FFmpeg's), by suffix."""
    if path.suffix == ".m4a":
        return write_aac(path, minutes, seed=seed, rate=rate, channels=channels)
    import soundfile as sf

    with sf.SoundFile(str(path), "w", rate, channels, subtype="PCM_16") as f:
        for part in signal(minutes, seed=seed, rate=rate, channels=channels):
            f.write(part)
    return path


# FFmpeg's AAC encoder is slower than tagging: a longer AAC file repeats this many minutes of
# encoded packets (rounded up to whole repeats), which decode like any other AAC stream.
AAC_ENCODED_MINUTES = 10


def write_aac(path: Path, minutes: float, *, seed: int, rate: int, channels: int) -> Path:
    import fractions

    import av

    layout = "stereo" if channels == 2 else "mono"
    encoded = path if minutes <= AAC_ENCODED_MINUTES else path.with_suffix(".part.m4a")
    with av.open(str(encoded), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = layout
        done = 0
        for part in signal(min(minutes, AAC_ENCODED_MINUTES), seed=seed, rate=rate,
                           channels=channels):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part.T), format="fltp",
                                               layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, done, fractions.Fraction(1, rate)
            container.mux(stream.encode(frame))
            done += len(part)
        container.mux(stream.encode())
    if encoded != path:
        repeat_packets(encoded, path, math.ceil(minutes / AAC_ENCODED_MINUTES))
        encoded.unlink()
    return path


def repeat_packets(source: Path, path: Path, times: int) -> None:
    """`source`'s audio stream `times` over, remuxed (no re-encoding) with shifted timestamps."""
    import av

    with av.open(str(source)) as inp:
        stream = inp.streams.audio[0]
        packets = [(bytes(p), p.pts, p.dts, p.duration) for p in inp.demux(stream) if p.dts is not None]
        span = packets[-1][2] + packets[-1][3] - packets[0][2]
        with av.open(str(path), "w") as out:
            copy = out.add_stream_from_template(stream)
            for repeat in range(times):
                for data, pts, dts, duration in packets:
                    packet = av.Packet(data)
                    packet.pts, packet.dts = pts + repeat * span, dts + repeat * span
                    packet.duration, packet.time_base, packet.stream = duration, stream.time_base, copy
                    out.mux(packet)


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
    stderr, peak_mb, wall = run_measured(command, f"tagging {recording}")
    match = SPEED.search(stderr)
    if match is None:
        raise SystemExit(f"no speed in the CLI's summary:\n{stderr}")
    return {"peak_mb": peak_mb, "wall_s": wall, "tag_s": float(match[1]),
            "speed": float(match[2])}


def run_measured(command: list[str], what: str) -> tuple[str, float, float]:
    """Run a command as a fresh process: its stderr, peak RSS (MB) and wall time (s)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{what} failed:\n{stderr}")
    return stderr, usage.ru_maxrss / 1024, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60, 180])
    parser.add_argument("--dir", type=Path, help="where to write the recordings (default: a temp dir)")
    parser.add_argument("--depth", type=int, default=2, help="encoder blocks of the test model")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--container", choices=["wav", "m4a"], default="wav",
                        help="wav (libsndfile decodes it) or m4a (AAC; FFmpeg decodes it)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        model = write_model(folder / "bench-model.safetensors", depth=args.depth)
        rows = []
        for minutes in args.minutes:
            recording = folder / f"bench-{minutes:g}min-48k-stereo.{args.container}"
            if not recording.exists():
                write_recording(recording, minutes)
            result = measure(recording, model, threads=args.threads, batch_size=args.batch_size,
                             workers=args.workers)
            decoded_mb = minutes * 60 * RATE * CHANNELS * 4 / 2**20
            rows.append((minutes, decoded_mb, result))
            print(f"  {minutes:g} min done: {result['peak_mb']:.0f} MB peak, "
                  f"{result['speed']:.1f}x real time", file=sys.stderr)

    kind = {"wav": "WAV", "m4a": "AAC (.m4a)"}[args.container]
    print(f"asttag tag, 48 kHz stereo {kind}, tiny224 x {args.depth} blocks, 128 x 1024 input, "
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
