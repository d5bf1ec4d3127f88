"""B2: how close the AST model runs to the machine's practical limit.

The model's FLOPs per window (ASTConfig.flops_per_window: its matrix multiplies) divided by the
time per window gives its achieved throughput; a large square matrix multiply in the same
process, at the same precision and thread count, gives the practical limit. Model and matmul
are timed alternately and the fastest of each counts, so a neighbour's load hits both alike.

The model is the AST base 10/10 (random weights) prepared exactly as the tagger prepares it
(`Tagger(...).model`: bf16 weights, int8 dynamic quantisation), fed a full batch of windows.
int8 has no matmul of its own here: its row compares with the fp32 matmul.

    python benchmarks/bench_efficiency.py                          # fp32 and bf16, batch 8
    python benchmarks/bench_efficiency.py --precisions fp32 bf16 int8 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

_MATMUL_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}


def seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def matmul_flops(dtype: torch.dtype, size: int) -> tuple[Callable[[], object], float]:
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    return (lambda: a @ b), 2.0 * size**3


def model_work(precision: str, batch_size: int) -> tuple[Callable[[], object], float]:
    """One forward pass of a tagger-prepared AST base over a full batch, and its FLOPs."""
    from asttag.labels import audioset
    from asttag.model import AST, ASTConfig
    from asttag.tagger import Tagger

    torch.manual_seed(0)
    config = ASTConfig.from_preset("base384", num_classes=527)
    tagger = Tagger(AST(config, labels=audioset()), device="cpu", precision=precision,
                    batch_size=batch_size)
    x = torch.randn(batch_size, config.target_length, config.num_mel_bins)

    def forward() -> torch.Tensor:
        return tagger.predict(x)

    return forward, float(config.flops_per_window * batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                        choices=sorted(_MATMUL_DTYPES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--matmul-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each; the fastest counts")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    from asttag.model import ASTConfig

    torch.set_num_threads(args.threads)
    rows = []
    for precision in args.precisions:
        model, model_flops = model_work(precision, args.batch_size)
        matmul, mm_flops = matmul_flops(_MATMUL_DTYPES[precision], args.matmul_size)
        model(), matmul()  # warm-up: oneDNN picks and caches its kernels on the first call
        model_s, matmul_s = float("inf"), float("inf")
        for _ in range(args.repeats):  # alternate, so that load changes touch both
            matmul_s = min(matmul_s, seconds(matmul))
            model_s = min(model_s, seconds(model))
        rows.append((precision, model_s / args.batch_size, model_flops / model_s / 1e9,
                     mm_flops / matmul_s / 1e9))

    one, five, _ = os.getloadavg()
    gflops = ASTConfig.from_preset("base384").flops_per_window / 1e9
    print(f"B2 efficiency: AST base 10/10, {gflops:.0f} GFLOPs per window, batch {args.batch_size}, "
          f"{args.threads} threads, CPU; matmul {args.matmul_size}^2; load average {one:.1f} "
          f"(5 min {five:.1f}) on {os.cpu_count()} cores")
    print(f"{'precision':<9} | {'s / window':>10} | {'model GFLOP/s':>13} | "
          f"{'matmul GFLOP/s':>14} | {'model / matmul':>14}")
    for precision, per_window, achieved, limit in rows:
        print(f"{precision:<9} | {per_window:>10.2f} | {achieved:>13.1f} | {limit:>14.1f} | "
              f"{achieved / limit:>13.0%}")


if __name__ == "__main__":
    main()
