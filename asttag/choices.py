"""The closed sets of values core functions accept, and the device default.

Apart from the modules that use them (device, tagger, recipes) because those import torch: the
CLI builds its options from these lists at import time, which must stay free of torch.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["DEFAULT_DEVICE", "Precision", "PRECISIONS", "TAG_PRECISIONS", "PADS", "AGGREGATES",
           "EMBEDDING_FORMATS"]

# CUDA when present, else the CPU (device.resolve_device): what every entry point runs on
# unless told otherwise.
DEFAULT_DEVICE = "auto"

# Mixed precision of training and evaluation; "auto" picks by device (device.resolve_precision).
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
# Tagging names its precision and adds dynamic int8 quantisation of the linear layers (CPU).
TAG_PRECISIONS = ("fp32", "bf16", "fp16", "int8")

# How the tagger fills the last partial window and clips shorter than one.
PADS = ("zero", "repeat")
# How the tagger turns window scores into clip scores.
AGGREGATES = ("max", "mean")
# Embedding output formats (asttag.embedding.EMBEDDING_WRITERS holds one writer per name).
EMBEDDING_FORMATS = ("safetensors", "npy", "parquet")
