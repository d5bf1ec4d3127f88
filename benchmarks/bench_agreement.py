"""B5: how far bf16 and int8 move a trained model's answers from fp32, on real recordings.

B1 measures speed and agreement on random weights (the only AST base weights these machines
have). A random AudioSet head scores every class near 0.5, so its 5th and 6th classes are often
closer together than bf16's rounding, and its top-5 overlap says more about those near-ties than
about the precision. This script asks the question the defaults depend on with trained weights:
a model (default: asttag's embedded default model) tags real recordings (default: the repo's
examples/) at fp32, bf16 and int8 through the tagger, and each lower precision is compared with
fp32 window by window: the largest probability difference and the mean top-5 overlap (the
issue's bounds: under 0.02 and above 4.8 of 5), beside the median gap between the fp32 5th and
6th classes and the time each run took (tagging only: the model is loaded once).

    python benchmarks/bench_agreement.py                                  # default model, examples/
    python benchmarks/bench_agreement.py --model ast-audioset.safetensors recordings/*.wav
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from bench_tagging import TOP, load_note, score_agreement

ROOT = Path(__file__).resolve().parent.parent
BOUNDS = (0.02, 4.8)  # the bounds: largest probability difference, top-5 overlap


def window_scores(model, files: list[Path], *, precision: str, hop: float | None) -> tuple[np.ndarray, float]:
    """Every window's probabilities over all files, and the seconds tagging took."""
    from asttag.tagger import Tagger

    tagger = Tagger(model, device="cpu", precision=precision, hop=hop, workers=0)
    started = time.perf_counter()
    scores = [result.scores for result in tagger.tag_many(files)]
    return np.concatenate(scores), time.perf_counter() - started


def fifth_sixth_gap(scores: np.ndarray) -> float:
    """The median gap between each window's 5th and 6th best probability."""
    ranked = -np.sort(-scores, axis=1)
    return float(np.median(ranked[:, TOP - 1] - ranked[:, TOP]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="recordings (default: examples/*)")
    parser.add_argument("--model", default="default", help="an asttag model name or file (default: the embedded one)")
    parser.add_argument("--hop", type=float, help="window hop in seconds (default: a quarter window)")
    parser.add_argument("--precisions", nargs="+", default=["bf16", "int8"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    import torch

    from asttag.hub import load_model

    torch.set_num_threads(args.threads)
    files = args.files or sorted(p for p in (ROOT / "examples").iterdir() if p.suffix == ".flac")
    model = load_model(args.model)
    hop = args.hop or round(model.config.target_length / 400, 2)  # a quarter window, in seconds
    reference, reference_seconds = window_scores(model, files, precision="fp32", hop=hop)
    print(f"B5 agreement: model {args.model!r}, {len(files)} files, {len(reference)} windows "
          f"(hop {hop:g} s), {args.threads} threads, CPU; {load_note()}")
    print(f"fp32 5th-to-6th class gap, median over windows: {fifth_sixth_gap(reference):.4f}")
    print(f"{'precision':<9} | {'time':>7} | {'vs fp32':>7} | {'max |dp|':>9} | "
          f"{'top-5 overlap':>13} | within bounds (< {BOUNDS[0]}, > {BOUNDS[1]})")
    print(f"{'fp32':<9} | {reference_seconds:>5.2f} s | {1:>6.2f}x | {'':>9} | {'':>13} |")
    for precision in args.precisions:
        scores, seconds = window_scores(model, files, precision=precision, hop=hop)
        largest, overlap = score_agreement(scores, reference)
        within = largest < BOUNDS[0] and overlap > BOUNDS[1]
        print(f"{precision:<9} | {seconds:>5.2f} s | {reference_seconds / seconds:>6.2f}x | "
              f"{largest:>9.2e} | {overlap:>9.2f} / 5 | {'yes' if within else 'no'}")


if __name__ == "__main__":
    main()
