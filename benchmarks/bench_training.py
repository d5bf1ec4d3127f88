"""Training throughput of AST sizes: samples per second of one optimiser step.

One step is what the engine does per batch once the data are decoded: SpecAugment and
normalisation, forward, BCE on the logits, backward and the recipe's Adam step. Decoding and
fbank computation are left out (they run in DataLoader workers, or come from --cache-dir).
Each configuration reports the median step time over --steps timed steps after --warmup.

    python benchmarks/bench_training.py                     # tiny and base on the CPU
    python benchmarks/bench_training.py --device cuda --batch 12 --frames 1024
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from asttag.features import FeatureConfig
from asttag.inference import autocast, resolve_precision
from asttag.model import AST, ASTConfig
from asttag.recipes import Recipe
from asttag.training import augment, training_loss

SIZES = {"tiny": "tiny224", "base": "base384"}


def step_times(
    config: ASTConfig, *, batch: int, steps: int, warmup: int, device: torch.device, precision: str
) -> list[float]:
    """Seconds of each timed training step of a fresh model on random log-mel input."""
    torch.manual_seed(0)
    features = FeatureConfig(num_mel_bins=config.num_mel_bins, target_length=config.target_length)
    model = AST(config, features=features).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=5e-7, betas=(0.95, 0.999))
    recipe = Recipe(name="bench", dataset="audioset", epochs=1, batch_size=batch, lr=1e-5,
                    freqm=48, timem=192)
    raw = torch.randn(batch, config.target_length, config.num_mel_bins, device=device) * 4.5 - 4.3
    targets = (torch.rand(batch, config.num_classes, device=device) < 0.02).float()
    times = []
    for i in range(warmup + steps):
        started = time.perf_counter()
        with autocast(device, precision):
            logits = model(augment(raw, recipe, features))
        training_loss(logits, targets, "bce").backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", nargs="+", default=None,
                        help="fp32, bf16, fp16 (default: fp32, plus bf16 where it runs natively)")
    parser.add_argument("--frames", type=int, default=512, help="input frames (ESC-50: 512)")
    parser.add_argument("--stride", type=int, default=10)
    parser.add_argument("--batch", type=int, default=None, help="default: 4 on CPU, 12 on GPU")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    device = torch.device(args.device)
    batch = args.batch or (12 if device.type == "cuda" else 4)
    precisions = args.precision or ["fp32"]
    if args.precision is None and (device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        precisions.append("bf16")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; input {args.frames} frames x 128 mel bins, "
          f"stride {args.stride}; batch {batch}; median of {args.steps} steps after {args.warmup}")
    print(f"{'size':<6} {'patches':>7} {'params':>8} {'precision':<9} {'s/step':>8} {'samples/s':>10}")
    rates: dict[tuple[str, str], float] = {}
    for size in args.sizes:
        config = ASTConfig.from_preset(SIZES[size], num_classes=527, target_length=args.frames,
                                       stride=(args.stride, args.stride))
        params = sum(p.numel() for p in AST(config).parameters()) / 1e6
        for precision in precisions:
            resolved = resolve_precision(precision, device)
            seconds = statistics.median(step_times(config, batch=batch, steps=args.steps,
                                                   warmup=args.warmup, device=device, precision=resolved))
            rates[size, precision] = batch / seconds
            print(f"{size:<6} {config.num_patches:>7} {params:>7.1f}M {precision:<9} {seconds:>8.3f} "
                  f"{batch / seconds:>10.2f}")
    for precision in precisions:
        if ("tiny", precision) in rates and ("base", precision) in rates:
            print(f"tiny / base ({precision}): {rates['tiny', precision] / rates['base', precision]:.1f}x")
    for size in args.sizes:
        if (size, "bf16") in rates and (size, "fp32") in rates:
            print(f"bf16 / fp32 ({size}): {rates[size, 'bf16'] / rates[size, 'fp32']:.2f}x")


if __name__ == "__main__":
    main()
