"""Model input for lists of clips, and batched prediction over them.

`ClipDataset` turns data-set `Example` records into the model's normalised log-mel input, with
an optional on-disk cache so that a fixed data set is decoded once. `predict_examples` runs a
model over such a list and returns probabilities in the examples' order: training uses it for
validation, `asttag evaluate` for evaluation.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .atomic import atomic_path
from .audio import load as load_audio
from .choices import DEFAULT_DEVICE, Precision
from .datasets import Example, target_vector
from .device import autocast, resolve_device, resolve_precision
from .features import FeatureConfig, fbank, normalize, pad_or_crop
from .model import AST, TaggingModel

__all__ = [
    "FeatureCache",
    "ClipDataset",
    "target_matrix",
    "example_logits",
    "predict_examples",
]

log = logging.getLogger(__name__)

class FeatureCache:
    """Decoded waveforms and raw log-mel frames (numpy arrays) on disk, one .npy file per clip
    and kind.

    An entry is keyed by the file's resolved path, size and modification time and by every
    setting that shapes it, so an edited file or another feature setting is a miss, never a
    stale hit. Entries are written atomically: processes and DataLoader workers may share one
    cache. Values round-trip exactly (float32), so a cached run equals an uncached one.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    def get(self, kind: str, path: Path, settings: dict, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array for (kind, path, settings), computing and storing it on a miss."""
        stat = path.stat()
        key = json.dumps([kind, str(path.resolve()), stat.st_size, stat.st_mtime_ns, settings])
        digest = hashlib.sha256(key.encode()).hexdigest()
        file = self.directory / kind / digest[:2] / f"{digest}.npy"
        if file.is_file():
            try:
                return np.load(file, allow_pickle=False)
            except (OSError, ValueError) as e:  # damaged entry: recompute and replace it
                log.warning("%s: unreadable cache entry (%s); recomputing", file, e)
        value = compute()
        with atomic_path(file) as tmp, open(tmp, "wb") as f:
            np.save(f, value.astype(np.float32, copy=False), allow_pickle=False)
        return value


class ClipDataset(Dataset):
    """Model input of each example: normalised log-mel (target_length, mel bins), float32.

    Clips are decoded, mixed to mono and resampled to `features.sample_rate`, then cut or
    zero-padded to `features.target_length` frames. `cache`, a folder, keeps decoded audio and
    log-mel frames on disk (see FeatureCache).
    """

    def __init__(
        self,
        examples: Sequence[Example],
        features: FeatureConfig,
        *,
        cache: str | Path | None = None,
    ) -> None:
        self.examples = list(examples)
        self.features = features
        self.cache = FeatureCache(cache) if cache is not None else None

    def __len__(self) -> int:
        return len(self.examples)

    def _decode(self, index: int) -> np.ndarray:
        return load_audio(self.examples[index].path, sample_rate=self.features.sample_rate)

    def wave(self, index: int) -> torch.Tensor:
        """The decoded mono waveform (samples,) at the feature sample rate."""
        if self.cache is None:
            return torch.from_numpy(self._decode(index))
        settings = {"sample_rate": self.features.sample_rate}
        path = self.examples[index].path
        return torch.from_numpy(self.cache.get("wave", path, settings, lambda: self._decode(index)))

    def log_mel(self, index: int) -> torch.Tensor:
        """Raw (un-normalised) log-mel frames, cut or padded to the target length."""
        if self.cache is None:
            frames = fbank(self._decode(index), self.features)
        else:
            # Only what shapes the raw frames: padding and normalisation come after the cache.
            settings = {k: v for k, v in self.features.to_dict().items()
                        if k not in ("mean", "std", "target_length")}
            frames = self.cache.get("fbank", self.examples[index].path, settings,
                                    lambda: fbank(self._decode(index), self.features))
        return torch.from_numpy(pad_or_crop(frames, self.features.target_length))

    def log_mel_of(self, wave: torch.Tensor) -> torch.Tensor:
        """Raw log-mel of a waveform this dataset produced (e.g. a mix of two of its clips)."""
        frames = fbank(wave.numpy(), self.features)
        return torch.from_numpy(pad_or_crop(frames, self.features.target_length))

    def __getitem__(self, index: int) -> torch.Tensor:
        return normalize(self.log_mel(index), self.features)


def target_matrix(examples: Sequence[Example], num_classes: int) -> np.ndarray:
    """Targets (examples, classes) float32: multi-hot labels, or the examples' soft scores."""
    if not examples:
        return np.zeros((0, num_classes), dtype=np.float32)
    return np.stack([target_vector(e, num_classes) for e in examples])


@torch.inference_mode()
def _outputs(
    model: TaggingModel,
    examples: Sequence[Example],
    compute: Callable[[Any, torch.Tensor], torch.Tensor],  # (the model, input) -> outputs
    *,
    batch_size: int,
    device: str | torch.device,
    workers: int,
    precision: Precision | str,
    cache: str | Path | None,
) -> np.ndarray:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = resolve_device(device) if isinstance(device, str) else device
    precision = resolve_precision(precision, device)
    model = model.to(device).eval()
    out = np.zeros((len(examples), len(model.labels)), dtype=np.float32)
    dataset = ClipDataset(examples, model.features, cache=cache)
    start = 0
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        with autocast(device, precision):
            values = compute(model, batch.to(device))
        out[start : start + len(batch)] = values.float().cpu().numpy()
        start += len(batch)
    return out


def example_logits(
    model: AST,
    examples: Sequence[Example],
    *,
    batch_size: int = 32,
    device: str | torch.device = DEFAULT_DEVICE,
    workers: int = 0,
    precision: Precision | str = "fp32",
    cache: str | Path | None = None,
) -> np.ndarray:
    """Logits (examples, classes) float32 of an AST on each example; see predict_examples."""
    return _outputs(model, examples, lambda m, x: m(x), batch_size=batch_size, device=device,
                    workers=workers, precision=precision, cache=cache)


def predict_examples(
    model: TaggingModel,
    examples: Sequence[Example],
    *,
    batch_size: int = 32,
    device: str | torch.device = DEFAULT_DEVICE,
    workers: int = 0,
    precision: Precision = "fp32",
    cache: str | Path | None = None,
) -> np.ndarray:
    """Class probabilities (examples, classes) float32, in the examples' order.

    `model` is an AST or any `TaggingModel`, such as an ensemble: sigmoid outputs for multi-label models, softmax for
    single-label ones. Each clip is one input window, cut or zero-padded to the model's length.
    The model is put in eval mode and moved to `device`.

    batch_size: clips per forward pass. device: 'cpu', 'cuda', 'cuda:N', 'auto' or a
    torch.device. workers: DataLoader processes decoding audio (0: decode in this process).
    precision: 'fp32', 'bf16', 'fp16' or 'auto' (see device.resolve_precision). cache: a
    folder that keeps decoded audio and log-mel frames for later passes (see FeatureCache).
    An undecodable clip raises asttag.audio.AudioError naming the file.
    """
    return _outputs(model, examples, lambda m, x: m.predict(x), batch_size=batch_size,
                    device=device, workers=workers, precision=precision, cache=cache)
