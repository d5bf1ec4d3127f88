"""B4: tagging on a CUDA GPU in bf16, end to end and model-only, against the transformers loop.

The same model, recording and windows as B1 (bench_tagging.py), batch 32 by default:
- asttag end to end (`asttag tag` as the CLI runs it, --precision bf16 --device cuda);
- asttag model-only: the tagger's prepared model on full batches already on the GPU, the
  ceiling the pipeline should approach when decoding and features hide behind the model;
- the plain transformers loop of B1, with the model in bf16 on the GPU (its features stay on
  the CPU, one chunk at a time, as ASTFeatureExtractor computes them).
Without a CUDA GPU it prints "skipped: no CUDA GPU" and exits 0.

    python benchmarks/bench_gpu.py                 # 30 minutes of audio
    python benchmarks/bench_gpu.py --minutes 120 --batch-size 64
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench_tagging import agreement, prepare, run_asttag, run_transformers


def model_only(model_path: Path, *, batch_size: int, batches: int) -> float:
    """Windows per second of the tagger's bf16 model on full batches already on the GPU."""
    import torch

    from asttag.hub import load_model
    from asttag.tagger import Tagger

    tagger = Tagger(load_model(str(model_path)), device="cuda", precision="bf16",
                    batch_size=batch_size)
    f = tagger.features
    x = torch.randn(batch_size, f.target_length, f.num_mel_bins, device="cuda")
    tagger.predict(x)  # warm-up: kernel selection and allocator
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(batches):
        tagger.predict(x)
    torch.cuda.synchronize()
    return batches * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="asttag decode workers (CLI default 1)")
    parser.add_argument("--dir", type=Path, help="where to write the model and recording")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA GPU")
        return
    with tempfile.TemporaryDirectory() as tmp:
        model, exported, recording = prepare(args.dir or Path(tmp), args.minutes)
        reference = run_transformers(recording, exported, batch_size=args.batch_size,
                                     device="cuda", dtype="bfloat16")
        ours = run_asttag(recording, model, precision="bf16", batch_size=args.batch_size,
                          workers=args.workers, device="cuda")
        ceiling = model_only(model, batch_size=args.batch_size, batches=20)

    windows = len(reference.scores)
    largest, overlap = agreement(ours, reference)
    print(f"B4 GPU: AST base 10/10 (random weights), {args.minutes:g} min 48 kHz stereo "
          f"({windows} windows), bf16, batch {args.batch_size}, asttag workers {args.workers}, "
          f"{torch.cuda.get_device_name()}, {os.cpu_count()} CPU cores")
    print(f"{'run':<28} | {'windows/s':>9} | {'vs transformers':>15}")
    reference_rate = windows / reference.seconds
    for name, rate in [("transformers bf16 loop", reference_rate),
                       ("asttag bf16 end to end", windows / ours.seconds),
                       ("asttag bf16 model only", ceiling)]:
        print(f"{name:<28} | {rate:>9.1f} | {rate / reference_rate:>14.2f}x")
    print(f"asttag end to end / model only: {windows / ours.seconds / ceiling:.0%}; agreement with "
          f"the transformers bf16 loop: max |dp| {largest:.2e}, top-5 overlap {overlap:.2f} / 5")


if __name__ == "__main__":
    main()
