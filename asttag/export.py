"""ONNX export: an AST as one .onnx file that runs without asttag or torch (onnxruntime).

The graph takes what the model takes, the normalised log-mel fbank (see features.py), and
gives logits and probabilities; the batch dimension is free. The file's metadata holds the
same description as an asttag checkpoint (architecture, feature settings, labels), so the
.onnx file is as self-describing as the checkpoint it came from.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from .atomic import atomic_path
from .checkpoint import description_metadata
from .model import AST, TaggingModel

__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "ExportError", "export_onnx"]

INPUT_NAME = "fbank"
OUTPUT_NAMES = ("logits", "probabilities")
INSTALL_HINT = "pip install 'asttag[onnx]'"


class ExportError(RuntimeError):
    """A model that cannot be exported, or an export that failed; the message says why."""


class _Graph(nn.Module):
    """What the exported graph computes: AST.forward and AST.probabilities in one pass.

    The head is one matrix multiply here: AST.classify runs it in fixed tiles of rows without
    gradients, a loop over the batch that the export would fix to the example's batch size.
    """

    def __init__(self, model: AST) -> None:
        super().__init__()
        self.model = model

    def forward(self, fbank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        logits = m.head(m.head_norm(m.pool(m.tokens(fbank))))
        return logits, m.probabilities(logits)


def export_onnx(model: TaggingModel, path: str | Path, *, opset: int = 18) -> Path:
    """Write `model` (fp32, on the CPU) as an ONNX file with dynamic batch, atomically.

    Input `fbank` is (batch, frames, mel bins) float32, normalised as the model's feature
    settings say; outputs are `logits` and `probabilities` (batch, classes). The metadata
    (`config`, `features`, `labels`, `extra`, `asttag_version`; JSON strings) describes the
    model.
    """
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it; fail before any work)
    except ImportError as e:
        raise ExportError(f"ONNX export needs the {e.name} package: {INSTALL_HINT}") from None
    if not isinstance(model, AST):
        raise ExportError(f"only a single AST exports to ONNX, not {type(model).__name__}")
    graph = _Graph(copy.deepcopy(model).to("cpu", torch.float32)).eval()
    example = torch.zeros(2, model.config.target_length, model.config.num_mel_bins)
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            program = torch.onnx.export(
                graph, (example,), dynamo=True, opset_version=opset, verbose=False,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
        except Exception as e:  # the exporter raises many types; the reason is in the message
            raise ExportError(f"ONNX export failed: {e}") from e
        assert program is not None  # None only from the legacy exporter (dynamo=False)
        proto = program.model_proto
        # The checkpoint's extra record too (its recommended threshold, its source), so that
        # a tagger running the export behaves as one running the checkpoint.
        fields = description_metadata(model) | {"extra": json.dumps(getattr(model, "extra", None) or {})}
        for key, value in fields.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))
    return path
