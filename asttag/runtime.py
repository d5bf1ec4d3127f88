"""ONNX Runtime as the tagger's CPU runtime: a model tagged without importing torch.

Importing torch takes 1.8 s on a 2-core machine, longer than the default model needs to tag a
10-minute recording; ONNX Runtime, numpy and libsndfile start in 0.2 s. So on a CPU, in fp32,
`asttag tag` runs an asttag checkpoint through ONNX Runtime when the `onnx` extra is installed
(`runtime="auto"`). The graph is the checkpoint's `export.export_onnx`, written once into the
cache ($ASTTAG_CACHE/onnx) on first use, which needs torch that once, and found again by the
checkpoint's path, size and modification time. ONNX Runtime's scores are the torch model's
within 1e-6 and, as torch's on a CPU, do not depend on the batch a window is scored in (tested).

Everything here but the first export is free of torch: the features (features.py) and the
audio (audio.py) are numpy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .catalog import cache_dir, local_model
from .choices import RUNTIMES
from .features import FeatureConfig
from .fileformat import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, check_stamp, safetensors_metadata
from .labels import LabelSet

__all__ = ["RuntimeChoiceError", "OnnxModel", "cached_export", "default_threads", "onnx_model"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'asttag[onnx]'"


class RuntimeChoiceError(ValueError):
    """A runtime asked for that cannot run this model here; the message says why."""


@dataclass
class OnnxModel:
    """An exported AST run by ONNX Runtime's CPU provider: what the tagger needs of a model
    (`features`, `labels`, `extra`) and `predict`, numpy in and out."""

    path: Path
    features: FeatureConfig
    labels: LabelSet
    extra: dict
    session: Any  # onnxruntime.InferenceSession

    # What the tagger's engine protocol asks (tagger.Engine).
    name = "onnxruntime"
    device_type = "cpu"
    pads_batches = False  # a window's scores do not depend on its batch (tested)

    @classmethod
    def load(cls, path: str | Path, *, threads: int | None = None) -> OnnxModel:
        """An .onnx file written by `export.export_onnx`, with `threads` (default:
        `default_threads()`) for its operators."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        # Its threads sleep between runs instead of spinning: between two batches the tagger's
        # decoding thread computes the next windows on the same cores (the default model on a
        # 10-minute file, 2 cores: 1.35 s against 1.61 s end to end, best of 4; 48 kHz stereo
        # 1.71 s against 2.07 s). A model run alone loses 3% (62 against 60 ms a batch).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 (onnxruntime raises its own types; the reason is the message)
            raise RuntimeChoiceError(f"{path}: ONNX Runtime cannot load it ({e})") from None
        meta = session.get_modelmeta().custom_metadata_map
        try:
            features = FeatureConfig.from_dict(json.loads(meta["features"]))
            labels = LabelSet.from_dict(json.loads(meta["labels"]))
            extra = json.loads(meta.get("extra", "{}"))
        except (KeyError, ValueError) as e:
            raise RuntimeChoiceError(f"{path}: not an asttag ONNX export ({e})") from None
        return cls(Path(path), features, labels, extra, session)

    def engine(self, device: str, precision: str) -> OnnxModel:
        """Itself, as the tagger's engine, once the device and precision are ones it runs."""
        reason = _unsupported(device, precision)
        if reason is not None:
            raise ValueError(f"ONNX Runtime {reason}: use --runtime torch")
        return self

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities (B, classes) float32 of normalised log-mel windows (B, frames, bins)."""
        (probabilities,) = self.session.run(["probabilities"], {"fbank": windows})
        return probabilities


def default_threads() -> int:
    """The operator threads when none are asked for: OMP_NUM_THREADS where it is set, as torch
    takes it, else every CPU this process may run on."""
    text = os.environ.get("OMP_NUM_THREADS", "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    if hasattr(os, "sched_getaffinity"):  # Linux: the CPUs this process may use
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _export_path(checkpoint: Path) -> Path:
    """Where the export of `checkpoint` is cached: keyed by the file's resolved path, size and
    modification time and by asttag's version, so an edited checkpoint or a new exporter is a
    miss, never a stale hit."""
    stat = checkpoint.stat()
    key = json.dumps([str(checkpoint.resolve()), stat.st_size, stat.st_mtime_ns, __version__])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache_dir() / "onnx" / f"{checkpoint.stem}-{digest}.onnx"


def cached_export(checkpoint: str | Path, *,
                  announce: Callable[[Path], object] | None = None) -> Path:
    """The ONNX export of an asttag checkpoint, from the cache; exported there on a miss (this
    needs torch and the `onnx` extra, and takes seconds, once), `announce(checkpoint)` called
    first."""
    checkpoint = Path(checkpoint)
    target = _export_path(checkpoint)
    if target.is_file():
        return target
    from .export import export_onnx
    from .loading import load

    model = load(checkpoint)  # a damaged checkpoint is refused before anything is announced
    if announce is not None:
        announce(checkpoint)
    started = time.perf_counter()
    export_onnx(model, target)
    log.info("%s: exported for ONNX Runtime in %.1f s, once (kept as %s)", checkpoint,
             time.perf_counter() - started, target)
    return target


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _gpu_possible() -> bool:
    """Whether CUDA could be here: without an NVIDIA or ROCm driver it cannot, and knowing that
    needs no torch."""
    if sys.platform == "win32":
        import ctypes.util

        return ctypes.util.find_library("nvcuda") is not None
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd"))


def _unsupported(device: str, precision: str) -> str | None:
    """What of `device` and `precision` ONNX Runtime does not run here (None: it runs both)."""
    if precision != "fp32":
        return f"runs fp32 here, not {precision}"
    if device not in ("auto", "cpu"):
        return f"runs on the CPU here, not on {device}"
    return None


def _why_not(source: str, device: str, precision: str) -> tuple[str | None, Path | None]:
    """Why ONNX Runtime cannot tag with `source` here (None: it can), and the checkpoint."""
    unsupported = _unsupported(device, precision)
    if unsupported is not None:
        return f"it {unsupported}", None
    if device == "auto" and _gpu_possible():
        return "a GPU may be here (--device cpu says the CPU)", None
    if _missing("onnxruntime"):
        return f"onnxruntime is not installed ({INSTALL_HINT})", None
    checkpoint = local_model(source)
    if checkpoint is None or not _is_checkpoint(checkpoint):
        return f"{source} is not an asttag checkpoint (convert it: asttag models convert)", None
    if not _export_path(checkpoint).is_file() and _missing("onnx", "onnxscript"):
        return f"exporting the model needs the onnx extra ({INSTALL_HINT})", None
    return None, checkpoint


def _is_checkpoint(path: Path) -> bool:
    if not path.is_file() or path.suffix != ".safetensors":
        return False
    try:
        check_stamp(safetensors_metadata(path, error=ValueError), source=path,
                    format_name=CHECKPOINT_FORMAT, max_version=CHECKPOINT_VERSION,
                    what="an asttag checkpoint", error=ValueError)
    except ValueError:  # a damaged or newer file is torch's loader's to report
        return False
    return True


def onnx_model(source: str, *, runtime: str = "auto", device: str = "auto",
               precision: str = "fp32", threads: int | None = None,
               announce: Callable[[Path], object] | None = None) -> OnnxModel | None:
    """The model `source` (a name or a file, as --model takes) for ONNX Runtime when `runtime`
    chooses it, else None (tag with torch).

    "auto" takes ONNX Runtime wherever it can run the model (fp32 on a CPU, the onnx extra
    installed, an asttag checkpoint that exports) and torch elsewhere; "onnxruntime" raises
    `RuntimeChoiceError` saying why it cannot; "torch" always gives None. A checkpoint that
    cannot be read raises checkpoint.CheckpointError, as loading it for torch would.
    `announce` is called before a first use exports the model (see `cached_export`).
    """
    if runtime not in RUNTIMES:
        raise RuntimeChoiceError(f"unknown runtime {runtime!r}: choose from {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return None
    reason, checkpoint = _why_not(source, device, precision)
    if reason is not None or checkpoint is None:
        if runtime == "onnxruntime":
            raise RuntimeChoiceError(f"ONNX Runtime cannot tag with {source}: {reason}")
        log.debug("tagging with torch: %s", reason)
        return None
    try:
        export = cached_export(checkpoint, announce=announce)
    except Exception as e:
        from .export import ExportError  # a miss imported it already

        if not isinstance(e, ExportError):
            raise
        if runtime == "onnxruntime":
            raise RuntimeChoiceError(f"{checkpoint}: {e}") from None
        log.warning("%s: %s; tagging with torch", checkpoint, e)
        return None
    try:
        return OnnxModel.load(export, threads=threads)
    except RuntimeChoiceError as e:  # a damaged cache entry is made again, not reported
        log.warning("%s; exporting it again", e)
        export.unlink(missing_ok=True)
        return OnnxModel.load(cached_export(checkpoint, announce=announce), threads=threads)
