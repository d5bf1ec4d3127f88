"""Peak memory and time of `asttag plot` on a 10-second, a 10-minute and a 3-hour recording.

Each recording (16 kHz mono WAV, tones that change every few seconds over quiet noise) is tagged
with the embedded default model and drawn by the real CLI in its own process, whose peak
resident memory is read with wait4 (ru_maxrss). The picture reduces the spectrogram to pixel
columns while the audio streams through, so peak memory must stay nearly flat as the recording
grows; what does grow is the tagger's own per-window scores (windows x 527 float32), which every
tag result holds. Prints a table and the ratio of the largest to the smallest peak.

    python benchmarks/bench_plot.py                      # 10 s, 10 min, 3 h
    python benchmarks/bench_plot.py --minutes 0.1667 1   # a quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench_memory import run_measured, write_recording

RATE = 16000


def measure(recording: Path, out: Path) -> dict:
    """Draw one file in a fresh process; its peak RSS and wall time."""
    command = [sys.executable, "-m", "asttag", "plot", str(recording), "-o", str(out),
               "--device", "cpu"]
    _, peak_mb, wall = run_measured(command, f"drawing {recording}")
    return {"peak_mb": peak_mb, "wall_s": wall,
            "png_kb": (out / recording.with_suffix(".png").name).stat().st_size / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10 / 60, 10, 180])
    parser.add_argument("--dir", type=Path, help="where to write the recordings (default: a temp dir)")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for minutes in args.minutes:
            recording = folder / f"bench-plot-{minutes * 60:g}s.wav"
            if not recording.exists():
                write_recording(recording, minutes, rate=RATE, channels=1)
            result = measure(recording, folder / "pictures")
            rows.append((minutes, result))
            print(f"  {minutes * 60:g} s done: {result['peak_mb']:.0f} MB peak", file=sys.stderr)

    print(f"asttag plot, 16 kHz mono WAV, the default model, threads: "
          f"{os.environ.get('OMP_NUM_THREADS', 'all cores')}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'recording':>10} | {'whole file as float32':>21} | {'peak RSS':>9} | {'wall':>8} | {'PNG':>7}")
    for minutes, r in rows:
        decoded_mb = minutes * 60 * RATE * 4 / 2**20
        print(f"{minutes * 60:>8.0f} s | {decoded_mb:>18.1f} MB | {r['peak_mb']:>6.0f} MB | "
              f"{r['wall_s']:>6.1f} s | {r['png_kb']:>4.0f} KB")
    peaks = [r["peak_mb"] for _, r in rows]
    print(f"peak RSS, longest / shortest recording: {peaks[-1] / peaks[0]:.3f}")


if __name__ == "__main__":
    main()
