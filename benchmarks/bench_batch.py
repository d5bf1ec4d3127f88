"""B8: `asttag tag` with the default model at batch 8 against the CPU default batch, or with
OpenMP's spinning threads against sleeping ones, alone and beside a busy process.

The embedded default model (0.96 s windows, 24 patches) runs a forward pass over 8 windows in
about a millisecond, so with 8 windows a batch the CPU thread pool starts and stops for little
work. Each row tags the same generated 10-minute 48 kHz stereo recording end to end in a new
`asttag tag FILE -f csv` process (start-up and model loading included). "busy" rows run a
process beside it that multiplies matrices on every core, as a training run or a build would.
The rounds alternate the two settings, so drifting load hits both alike.

`--vary wait` compares OpenMP's own wait policy (threads spin a while after each parallel region;
`OMP_WAIT_POLICY` set empty, which OpenMP reads as unset) with `OMP_WAIT_POLICY=PASSIVE` (idle
threads sleep at once), both at the default batch: spinning wins alone, sleeping when the cores
are busy.

    python benchmarks/bench_batch.py                 # 2 rounds, 10 minutes of audio
    python benchmarks/bench_batch.py --rounds 3 --minutes 30
    python benchmarks/bench_batch.py --vary wait --rounds 3
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


def tag_seconds(recording: Path, batch: int | None, *, wait: str | None = None) -> float:
    """Wall time of one `asttag tag` process (the default model, csv to /dev/null)."""
    command = [sys.executable, "-m", "asttag", "tag", str(recording), "-f", "csv"]
    if batch is not None:
        command += ["--batch-size", str(batch)]
    env = dict(os.environ)
    if wait is not None:
        env["OMP_WAIT_POLICY"] = wait
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--vary", choices=["batch", "wait"], default="batch")
    args = parser.parse_args()

    from asttag.hub import load_model
    from asttag.tagger import default_batch_size

    default = default_batch_size(load_model("default").features, "cpu")
    print(f"cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.2f}; "
          f"CPU default batch for the default model: {default}")
    if args.vary == "batch":
        names = ("batch 8 (s)", f"batch {default} (s)")
        settings = ({"batch": 8}, {"batch": None})
    else:
        names = ("spin (s)", "sleep (s)")
        settings = ({"batch": None, "wait": ""}, {"batch": None, "wait": "PASSIVE"})
    with tempfile.TemporaryDirectory() as tmp:
        recording = write_recording(Path(tmp) / "ten.wav", args.minutes)
        audio = args.minutes * 60
        tag_seconds(recording, None)  # warm the page cache and imports
        print(f"{'load':6s} {'round':>5s} {names[0]:>12s} {names[1]:>13s} {'ratio':>6s}")
        for load in ("alone", "busy"):
            busy = subprocess.Popen([sys.executable, "-c", BUSY]) if load == "busy" else None
            try:
                for r in range(args.rounds):
                    order = (1, 0) if r % 2 else (0, 1)  # alternate the order
                    times = [0.0, 0.0]
                    for i in order:
                        times[i] = tag_seconds(recording, **settings[i])
                    print(f"{load:6s} {r + 1:5d} {times[0]:12.2f} {times[1]:13.2f} "
                          f"{times[0] / times[1]:6.2f}   ({audio / times[1]:.0f}x real time with "
                          "the second)", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()


if __name__ == "__main__":
    main()
