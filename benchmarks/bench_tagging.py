"""B1: tagging throughput of `asttag tag` against a plain transformers loop, with agreement.

Both sides get the same AST base 10/10 (random weights, seed 0; asttag's checkpoint exported to
transformers' format with checkpoint.to_transformers, so the weights are the same), the same
generated 48 kHz stereo recording, the same windows (10.24 s, hop 10.24 s) and batches of 8.
Each run counts the whole pipeline from the checkpoint on disk to the top-5 clip tags as text:
model loading, decoding, resampling, features, the model and the output.

- asttag: the code `asttag tag FILE -f csv` runs (the model on the runtime the CLI picks: ONNX
  Runtime for fp32 where the onnx extra is installed, its export made once before the rounds and
  timed apart, else torch; Tagger with the CLI's default of one decode thread, the csv writer),
  in this process so that its per-window scores can be compared; its argument parsing and
  imports are not counted (see --startup).
- transformers: what a user would write: soundfile, torchaudio's resampler, 10.24 s chunks,
  ASTFeatureExtractor and ASTForAudioClassification (sdpa attention) on 8 chunks at a time,
  sigmoid, the max over windows and its top 5. Always fp32: the reference for every row.

Agreement with the transformers fp32 scores, window by window: the largest difference of any
class probability and the mean overlap of the top-5 labels (out of 5).

The model costs ~260 GFLOPs a window, so the default is 16 windows (2.73 minutes of audio, two
full batches); the issue's full run is 10 minutes:

    python benchmarks/bench_tagging.py                      # 16 windows, a few minutes on 2 cores
    python benchmarks/bench_tagging.py --minutes 10         # the issue's 10-minute recording
    python benchmarks/bench_tagging.py --startup            # also: CLI start-up in a new process
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_memory import write_model, write_recording

WINDOW_SECONDS = 10.24
DEFAULT_MINUTES = 16 * WINDOW_SECONDS / 60  # two full batches of 8
TOP = 5


@dataclass
class Run:
    name: str
    seconds: float
    scores: np.ndarray  # (windows, classes) probabilities


def base_model(folder: Path) -> tuple[Path, Path]:
    """The asttag checkpoint of a random AST base 10/10 and its transformers export."""
    from asttag import checkpoint

    # One LayerNorm eps everywhere: transformers' AST has a single layer_norm_eps, so both
    # sides compute exactly the same function.
    path = write_model(folder / "ast-base-10-10.safetensors", depth=12, preset="base384",
                       norm_eps=1e-6, head_eps=1e-6)
    exported = checkpoint.to_transformers(checkpoint.load(path), folder / "ast-base-10-10-hf", overwrite=True)
    return path, exported


def prepare(folder: Path, minutes: float) -> tuple[Path, Path, Path]:
    """The base model, its transformers export and the recording, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    model, exported = base_model(folder)
    recording = folder / f"bench-{minutes:g}min-48k-stereo.wav"
    if not recording.exists():
        write_recording(recording, minutes)
    return model, exported, recording


def run_asttag(recording: Path, model: Path, *, precision: str, batch_size: int,
               workers: int, device: str = "cpu") -> Run:
    """`asttag tag RECORDING -m MODEL -f csv` as the CLI runs it, timed from loading the model."""
    from asttag.hub import load_model
    from asttag.runtime import onnx_model
    from asttag.tagger import Tagger
    from asttag.writers import StreamOutput, make_writer

    started = time.perf_counter()
    net = (onnx_model(str(model), runtime="auto", device=device, precision=precision)
           or load_model(str(model)))
    tagger = Tagger(net, device=device, precision=precision, batch_size=batch_size, workers=workers)
    out = StreamOutput(io.StringIO(), make_writer("csv"))
    (result,) = tagger.tag_many([recording])
    out.write(result)
    out.close()
    return Run(f"asttag {precision}", time.perf_counter() - started, result.scores)


def run_transformers(recording: Path, exported: Path, *, batch_size: int, device: str = "cpu",
                     dtype: str = "float32") -> Run:
    """A plain transformers loop over 10.24 s chunks, timed from loading the model."""
    import soundfile as sf
    import torch
    import torchaudio.functional as F
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    started = time.perf_counter()
    extractor = ASTFeatureExtractor.from_pretrained(exported)
    model = ASTForAudioClassification.from_pretrained(
        exported, attn_implementation="sdpa", torch_dtype=getattr(torch, dtype)).to(device).eval()
    rate = extractor.sampling_rate
    wave, source_rate = sf.read(str(recording), dtype="float32", always_2d=True)
    mono = F.resample(torch.from_numpy(wave.mean(axis=1)), source_rate, rate).numpy()
    step = round(WINDOW_SECONDS * rate)
    chunks = [mono[i : i + step] for i in range(0, len(mono), step)]
    scores = []
    with torch.inference_mode():
        for i in range(0, len(chunks), batch_size):
            inputs = extractor(chunks[i : i + batch_size], sampling_rate=rate, return_tensors="pt")
            logits = model(inputs["input_values"].to(device, model.dtype)).logits
            scores.append(logits.float().sigmoid().cpu().numpy())
    windows = np.concatenate(scores)
    clip = windows.max(axis=0)
    labels = model.config.id2label
    top = np.argsort(-clip)[:TOP]
    # The text a user's script would print, as asttag's run writes its csv: both pay for it.
    io.StringIO().write("".join(f"{recording},{labels[int(c)]},{clip[c]:.6f}\n" for c in top))
    return Run(f"transformers {dtype}", time.perf_counter() - started, windows)


def agreement(run: Run, reference: Run) -> tuple[float, float]:
    """Largest probability difference and mean top-5 overlap, window by window."""
    if run.scores.shape != reference.scores.shape:
        raise SystemExit(f"{run.name}: scores {run.scores.shape}, reference {reference.scores.shape}")
    return score_agreement(run.scores, reference.scores)


def score_agreement(scores: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Largest probability difference and mean top-5 overlap of two (windows, classes) arrays."""
    largest = float(np.abs(scores - reference).max())
    pairs = zip(_top(scores), _top(reference))
    return largest, float(np.mean([len(set(a) & set(b)) for a, b in pairs]))


def _top(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, axis=1)[:, :TOP]


def startup_seconds(command: list[str], repeats: int = 3) -> float:
    """The fastest of a few runs of `command` in a fresh process."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - started)
    return best


def print_startup() -> None:
    python = sys.executable
    rows = [
        ("asttag --help", [python, "-m", "asttag", "--help"]),
        ("import torch", [python, "-c", "import torch"]),
        ("import asttag.model", [python, "-c", "import asttag.model"]),
        ("import timm", [python, "-c", "import timm"]),
    ]
    print("\nstart-up in a fresh process (fastest of 3)")
    for name, command in rows:
        print(f"  {name:<22} {startup_seconds(command):6.2f} s")


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                        help="recording length (default: 16 windows, 2.73 min)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="asttag decode workers (CLI default 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest counts")
    parser.add_argument("--startup", action="store_true", help="also time CLI start-up")
    parser.add_argument("--dir", type=Path, help="where to write the model and recording")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, exported, recording = prepare(args.dir or Path(tmp), args.minutes)
        print(f"before: {load_note()}", file=sys.stderr)
        from asttag.runtime import onnx_model

        exporting = time.perf_counter()
        runtime = onnx_model(str(model), runtime="auto", device="cpu")
        print(f"asttag fp32 runs on {runtime.name if runtime else 'torch'}"
              + (f" (exported once in {time.perf_counter() - exporting:.1f} s)" if runtime else ""),
              file=sys.stderr)
        best: dict[str, Run] = {}
        for _ in range(args.repeat):
            runs = [lambda: run_transformers(recording, exported, batch_size=args.batch_size)]
            runs += [lambda p=p: run_asttag(recording, model, precision=p, batch_size=args.batch_size,
                                            workers=args.workers) for p in args.precisions]
            for measure in runs:
                run = measure()
                print(f"  {run.name}: {run.seconds:.1f} s", file=sys.stderr)
                if run.name not in best or run.seconds < best[run.name].seconds:
                    best[run.name] = run

    reference = best.pop("transformers float32")
    windows = len(reference.scores)
    audio = args.minutes * 60
    print(f"B1 tagging: AST base 10/10 (random weights), {args.minutes:g} min 48 kHz stereo "
          f"({windows} windows of 10.24 s), batch {args.batch_size}, {args.threads} threads, "
          f"asttag workers {args.workers}, CPU; {load_note()}")
    print(f"{'run':<22} | {'time':>8} | {'windows/s':>9} | {'x real time':>11} | "
          f"{'vs transformers fp32':>20} | {'max |dp|':>9} | {'top-5 overlap':>13}")
    for run in [reference, *best.values()]:
        largest, overlap = agreement(run, reference)
        print(f"{run.name:<22} | {run.seconds:>6.1f} s | {windows / run.seconds:>9.3f} | "
              f"{audio / run.seconds:>11.2f} | {reference.seconds / run.seconds:>19.2f}x | "
              f"{largest:>9.2e} | {overlap:>9.2f} / 5")
    if args.startup:
        print_startup()


if __name__ == "__main__":
    main()
