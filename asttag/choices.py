"""The closed sets of values core functions accept, and the device default.

Apart from the modules that use them (device, tagger, recipes) because those import torch: the
CLI builds its options from these lists at import time, which must stay free of torch.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["DEFAULT_DEVICE", "Precision", "PRECISIONS", "TagPrecision", "TAG_PRECISIONS", "Pad",
           "PADS", "Aggregate", "AGGREGATES", "EmbeddingFormat", "EMBEDDING_FORMATS", "DatasetLayout", "DATASET_LAYOUTS",
           "Runtime", "RUNTIMES"]

# CUDA when present, else the CPU (device.resolve_device): what every entry point runs on
# unless told otherwise.
DEFAULT_DEVICE = "auto"

# Each set is a Literal (the type annotations use; Typer offers its values as choices) and the
# tuple of its values.
# Mixed precision of training and evaluation; "auto" picks by device (device.resolve_precision).
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
# Tagging names its precision and adds dynamic int8 quantisation of the linear layers (CPU).
TagPrecision = Literal["fp32", "bf16", "fp16", "int8"]
TAG_PRECISIONS: tuple[str, ...] = get_args(TagPrecision)

# What runs the tagger's model: torch, ONNX Runtime (CPU, fp32), or the first that can
# (asttag.runtime.onnx_model).
Runtime = Literal["auto", "torch", "onnxruntime"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)

# How the tagger fills the last partial window and clips shorter than one.
Pad = Literal["zero", "repeat"]
PADS: tuple[str, ...] = get_args(Pad)
# How the tagger turns window scores into clip scores.
Aggregate = Literal["max", "mean"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
# Embedding output formats (asttag.embedding.EMBEDDING_WRITERS holds one writer per name).
EmbeddingFormat = Literal["safetensors", "npy", "parquet"]
EMBEDDING_FORMATS: tuple[str, ...] = get_args(EmbeddingFormat)
# Data set layouts (asttag.datasets.DATASETS holds one reader per name).
DatasetLayout = Literal["esc50", "speechcommands", "audioset", "folder", "manifest"]
DATASET_LAYOUTS: tuple[str, ...] = get_args(DatasetLayout)
