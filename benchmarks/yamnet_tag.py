"""YAMNet as a user runs it: top-5 clip tags of a recording, for B6 (bench_yamnet.py).

A plain script, not asttag: soundfile reads the file, channels are averaged, SciPy resamples to
16 kHz (imported only then), and the TFLite model (ai-edge-litert, XNNPACK) scores frames of
15,600 samples every HOP seconds; a clip's tags are the max over its frames.

    python benchmarks/yamnet_tag.py yamnet.tflite recording.wav --hop 0.96 --threads 2
"""

from __future__ import annotations

import argparse

import numpy as np
import soundfile as sf
from ai_edge_litert.interpreter import Interpreter

RATE = 16000
FRAME = 15600  # YAMNet's input: 0.975 s, one 96-frame patch of a 25 ms / 10 ms STFT


def interpreter(model: str, threads: int) -> Interpreter:
    net = Interpreter(model_path=model, num_threads=threads)
    net.allocate_tensors()
    return net


def clip_scores(net: Interpreter, path: str, hop: float) -> np.ndarray:
    """Max over the recording's frames of YAMNet's 521 scores."""
    wave, rate = sf.read(path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if rate != RATE:
        from scipy.signal import resample_poly  # only here: importing SciPy costs start-up

        wave = resample_poly(wave, RATE, rate).astype(np.float32)
    if len(wave) < FRAME:
        wave = np.pad(wave, (0, FRAME - len(wave)))
    step = round(hop * RATE)
    (source,) = net.get_input_details()
    (target,) = net.get_output_details()
    best = np.zeros(target["shape"][-1], dtype=np.float32)
    for start in range(0, len(wave) - FRAME + 1, step):
        net.set_tensor(source["index"], wave[start : start + FRAME])
        net.invoke()
        np.maximum(best, net.get_tensor(target["index"])[0], out=best)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="yamnet.tflite")
    parser.add_argument("recording")
    parser.add_argument("--hop", type=float, default=0.96)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    net = interpreter(args.model, args.threads)
    scores = clip_scores(net, args.recording, args.hop)
    top = np.argsort(-scores)[:5]
    print(" ".join(f"{i}:{scores[i]:.3f}" for i in top))


if __name__ == "__main__":
    main()
