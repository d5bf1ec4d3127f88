"""Devices and precisions resolved for tagging, training and evaluation (the choices: choices.py)."""

from __future__ import annotations

import contextlib

import torch

from .choices import DEFAULT_DEVICE, PRECISIONS, Precision

__all__ = ["resolve_device", "resolve_precision", "refuse_fp16_off_cuda", "autocast"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = DEFAULT_DEVICE) -> torch.device:
    """'auto' picks CUDA when present, else the CPU; 'cpu', 'cuda' and 'cuda:N' as named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but no CUDA GPU is available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) here")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    return device


def refuse_fp16_off_cuda(precision: str, device: torch.device) -> None:
    """fp16 autocast exists on CUDA only; elsewhere it is refused, naming the alternatives."""
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"fp16 needs a CUDA device; on {device.type} use bf16 or fp32")


def resolve_precision(precision: Precision | str, device: torch.device) -> str:
    """The precision to compute in: 'auto' is bf16 (else fp16) on CUDA and fp32 on the CPU.

    bf16 on a CPU is allowed where oneDNN runs it natively; fp16 needs CUDA.
    """
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    refuse_fp16_off_cuda(precision, device)
    if precision == "bf16" and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise ValueError("this CPU has no native bf16 support; use fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for a resolved precision ('fp32' is a no-op)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])
