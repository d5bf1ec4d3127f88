"""B6: `asttag tag` with the default model at batch 8 against the CPU default batch, alone and
beside a busy process.

The embedded default model (0.96 s windows, 24 patches) runs a forward pass over 8 windows in
about a millisecond, so with 8 windows a batch the CPU thread pool starts and stops for little
work. Each row tags the same generated 10-minute 48 kHz stereo recording end to end in a new
`asttag tag FILE -f csv` process (start-up and model loading included). "busy" rows run a
process beside it that multiplies matrices on every core, as a training run or a build would.
The rounds alternate the batch sizes, so drifting load hits both alike.

    python benchmarks/bench_batch.py                 # 2 rounds, 10 minutes of audio
    python benchmarks/bench_batch.py --rounds 3 --minutes 30
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_memory import write_recording

BUSY = """
import torch
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a)
"""


def tag_seconds(recording: Path, batch: int | None) -> float:
    """Wall time of one `asttag tag` process (the default model, csv to /dev/null)."""
    command = [sys.executable, "-m", "asttag", "tag", str(recording), "-f", "csv"]
    if batch is not None:
        command += ["--batch-size", str(batch)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from asttag.hub import load_model
    from asttag.tagger import default_batch_size

    default = default_batch_size(load_model("default").features, "cpu")
    print(f"cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.2f}; "
          f"CPU default batch for the default model: {default}")
    with tempfile.TemporaryDirectory() as tmp:
        recording = write_recording(Path(tmp) / "ten.wav", args.minutes)
        audio = args.minutes * 60
        tag_seconds(recording, None)  # warm the page cache and imports
        print(f"{'load':6s} {'round':>5s} {'batch 8 (s)':>12s} {f'batch {default} (s)':>13s} {'ratio':>6s}")
        for load in ("alone", "busy"):
            busy = subprocess.Popen([sys.executable, "-c", BUSY]) if load == "busy" else None
            try:
                for r in range(args.rounds):
                    if r % 2:  # alternate the order
                        at_default = tag_seconds(recording, None)
                        at_eight = tag_seconds(recording, 8)
                    else:
                        at_eight = tag_seconds(recording, 8)
                        at_default = tag_seconds(recording, None)
                    print(f"{load:6s} {r + 1:5d} {at_eight:12.2f} {at_default:13.2f} "
                          f"{at_eight / at_default:6.2f}   ({audio / at_default:.0f}x real time at "
                          "the default)", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()


if __name__ == "__main__":
    main()
