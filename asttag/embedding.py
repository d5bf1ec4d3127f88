"""Embeddings: what the model's head sees, per window of a recording and per file.

`Embedder` is a `Tagger` whose windows give embeddings instead of scores: the same windows,
batching, devices, precisions and decoding workers, so a window's embedding is the one its
scores come from. It runs through `asttag.runs.tag_files` like tagging does, so a job resumes
from a journal and shards over torchrun's processes by the same rules. The formats below turn
journal chunks (JSON lines holding base64 float32 arrays) into one output:

- `.safetensors`: tensors `window_embeddings` (windows, D), `window_file` (index into the
  `files` list in the metadata), `window_start`, `window_end` (seconds), `file_embeddings`
  (files, D), `file_duration`; with patches also `window_patch_embeddings` and
  `file_patch_embeddings`.
- `.npy`: `OUT.npy` (windows, D) with its index `OUT.csv` (file, start, end per row), and
  `OUT.files.npy` (files, D) with `OUT.files.csv` (file, duration, windows); with patches
  `OUT.patches.npy` and `OUT.files.patches.npy` in the same row orders.
- `.parquet` (needs pyarrow): `OUT.parquet` one row per window (file, start, end, embedding
  [, patch_embedding]) and `OUT.files.parquet` one row per file (file, duration, windows,
  embedding [, patch_embedding]).
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_path
from .model import AST, TaggingModel
from .tagger import Tagger, TorchEngine
from .writers import Writer

__all__ = [
    "EMBEDDING_WRITERS",
    "Embedder",
    "embedding_model",
    "EmbeddingResult",
    "EmbeddingWriter",
    "embedding_format",
    "make_embedding_writer",
    "read_embeddings",
]

INSTALL_PARQUET = "pip install 'asttag[parquet]'"


@dataclass
class EmbeddingResult:
    """One file's embeddings: per window (with its span) and their mean over the file."""

    path: str
    duration: float
    starts: np.ndarray  # (windows,) seconds
    ends: np.ndarray  # (windows,) seconds, the last one clipped to the duration
    embeddings: np.ndarray  # (windows, D): the mean of the [CLS] and distillation tokens
    patch_embeddings: np.ndarray | None  # (windows, D): the mean of the patch tokens

    @property
    def file_embedding(self) -> np.ndarray:
        return self.embeddings.mean(axis=0)

    @property
    def file_patch_embedding(self) -> np.ndarray | None:
        return None if self.patch_embeddings is None else self.patch_embeddings.mean(axis=0)


def embedding_model(model: TaggingModel) -> AST:
    """`model` itself if it is one AST, the only kind embeddings come from; else TypeError."""
    if not isinstance(model, AST):
        raise TypeError(f"embeddings come from a single AST, not {type(model).__name__}")
    return model


class _EmbeddingEngine(TorchEngine):
    """The tagger's torch engine, giving a window's embeddings (B, D), or (B, 2D) with the
    patch mean after them, instead of its scores."""

    model: AST  # the one AST given, as the engine prepared it for its device and precision

    def __init__(self, model: AST, *, patches: bool, **settings: Any) -> None:
        super().__init__(model, **settings)
        self.patches = patches

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        pooled, patches = self.model.embed(windows, return_tokens=True)
        return torch.cat([pooled, patches.mean(dim=1)], dim=1) if self.patches else pooled


class Embedder(Tagger):
    """Embed files window by window; `patches` adds the mean of the patch tokens.

    Takes the Tagger's window, hop, pad, device, precision, batch and worker settings;
    `tag_many(paths)` yields an `EmbeddingResult` (or a `TagFailure`) per file, in order.
    """

    engine: _EmbeddingEngine

    def __init__(self, model: TaggingModel, *, patches: bool = False, **settings: Any) -> None:
        self.patches = patches  # before the Tagger builds the engine, which uses it
        super().__init__(embedding_model(model), **settings)

    def _engine(self, model: Any, *, device: str | torch.device, precision: str) -> _EmbeddingEngine:
        return _EmbeddingEngine(model, device=device, precision=precision, patches=self.patches)

    @property
    def embed_dim(self) -> int:
        """D, the width of one embedding (twice that with `patches`)."""
        return self.engine.model.config.embed_dim

    def options(self) -> dict:
        return {**super().options(), "patches": self.patches}

    def _result(self, path: str, duration: float, scores: np.ndarray) -> EmbeddingResult:  # type: ignore[override]
        starts, ends = self.plan.spans(len(scores), duration)
        dim = self.embed_dim
        return EmbeddingResult(
            path=path, duration=duration, starts=starts, ends=ends,
            embeddings=np.ascontiguousarray(scores[:, :dim]),
            patch_embeddings=np.ascontiguousarray(scores[:, dim:]) if self.patches else None,
        )


# --------------------------------------------------------------------------- output formats


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: str, dim: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(-1, dim)


@dataclass
class _Table:
    """Every file's embeddings stacked, as the formats write them."""

    files: list[str]
    durations: np.ndarray  # (files,)
    window_file: np.ndarray  # (windows,) index into files
    starts: np.ndarray
    ends: np.ndarray
    embeddings: np.ndarray  # (windows, D)
    patch_embeddings: np.ndarray | None

    @classmethod
    def from_chunks(cls, chunks: Iterable[str], *, dim: int, patches: bool) -> _Table:
        files, durations, owner, starts, ends, rows, patch_rows = [], [], [], [], [], [], []
        for i, chunk in enumerate(chunks):
            entry = json.loads(chunk)
            files.append(entry["file"])
            durations.append(entry["duration"])
            starts.append(np.asarray(entry["starts"], dtype=np.float64))
            ends.append(np.asarray(entry["ends"], dtype=np.float64))
            rows.append(_decode(entry["embeddings"], dim))
            owner.append(np.full(len(rows[-1]), i, dtype=np.int64))
            if patches:
                patch_rows.append(_decode(entry["patch_embeddings"], dim))

        def stack(parts: list[np.ndarray], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(shape, dtype)

        return cls(
            files=files, durations=np.asarray(durations, dtype=np.float64),
            window_file=stack(owner, (0,), np.int64), starts=stack(starts, (0,), np.float64),
            ends=stack(ends, (0,), np.float64), embeddings=stack(rows, (0, dim), np.float32),
            patch_embeddings=stack(patch_rows, (0, dim), np.float32) if patches else None,
        )

    def file_means(self, rows: np.ndarray) -> np.ndarray:
        """The mean of each file's rows (files, D), as `EmbeddingResult.file_embedding`."""
        return np.stack([rows[self.window_file == i].mean(axis=0) for i in range(len(self.files))]) \
            if self.files else np.zeros((0, rows.shape[1]), np.float32)

    @property
    def windows_per_file(self) -> np.ndarray:
        return np.bincount(self.window_file, minlength=len(self.files))


class EmbeddingWriter(Writer):
    """An embedding output format: journal chunks in, one output (and its companions) out."""

    def __init__(self, *, dim: int, patches: bool = False) -> None:
        self.mode = "embeddings"
        self.dim = dim
        self.patches = patches

    def chunk(self, result: EmbeddingResult) -> str:  # type: ignore[override]
        entry = {
            "file": result.path, "duration": result.duration,
            "starts": result.starts.tolist(), "ends": result.ends.tolist(),
            "embeddings": _encode(result.embeddings),
        }
        if self.patches:
            assert result.patch_embeddings is not None
            entry["patch_embeddings"] = _encode(result.patch_embeddings)
        return json.dumps(entry)

    def write(self, path: Path, chunks: Iterable[str]) -> int:
        table = _Table.from_chunks(chunks, dim=self.dim, patches=self.patches)
        self._write(Path(path), table)
        return len(table.files)

    def _write(self, path: Path, table: _Table) -> None:
        raise NotImplementedError


class SafetensorsEmbeddings(EmbeddingWriter):
    name, suffix = "safetensors", ".safetensors"

    def _write(self, path: Path, table: _Table) -> None:
        from safetensors.numpy import save_file

        tensors = {
            "window_embeddings": table.embeddings, "window_file": table.window_file,
            "window_start": table.starts, "window_end": table.ends,
            "file_embeddings": table.file_means(table.embeddings), "file_duration": table.durations,
        }
        if table.patch_embeddings is not None:
            tensors["window_patch_embeddings"] = table.patch_embeddings
            tensors["file_patch_embeddings"] = table.file_means(table.patch_embeddings)
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp),
                      metadata={"format": "asttag-embeddings", "files": json.dumps(table.files)})


def _companion(path: Path, part: str) -> Path:
    """OUT.npy -> OUT.files.npy, OUT.csv, ...: the files written beside the main output."""
    return path.with_name(path.name[: -len(path.suffix)] + part)


def _write_csv(path: Path, header: list[str], rows: Iterable[Iterable[Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header)
        out.writerows(rows)


class NpyEmbeddings(EmbeddingWriter):
    name, suffix = "npy", ".npy"

    def _write(self, path: Path, table: _Table) -> None:
        arrays = {".files.npy": table.file_means(table.embeddings)}
        if table.patch_embeddings is not None:
            arrays[".patches.npy"] = table.patch_embeddings
            arrays[".files.patches.npy"] = table.file_means(table.patch_embeddings)
        for part, array in arrays.items():
            with atomic_path(_companion(path, part)) as tmp, open(tmp, "wb") as f:
                np.save(f, array)
        _write_csv(_companion(path, ".csv"), ["file", "start", "end"],
                   ((table.files[i], f"{s:.3f}", f"{e:.3f}")
                    for i, s, e in zip(table.window_file, table.starts, table.ends)))
        _write_csv(_companion(path, ".files.csv"), ["file", "duration", "windows"],
                   ((f, f"{d:.3f}", n) for f, d, n in zip(table.files, table.durations,
                                                         table.windows_per_file)))
        # The main file last: when it is there, its companions are complete.
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, table.embeddings)


class ParquetEmbeddings(EmbeddingWriter):
    name, suffix = "parquet", ".parquet"

    def __init__(self, *, dim: int, patches: bool = False) -> None:
        # Refused before a job starts, not when its output is assembled at the end.
        if importlib.util.find_spec("pyarrow") is None:
            raise ValueError(f"Parquet output needs pyarrow: {INSTALL_PARQUET}")
        super().__init__(dim=dim, patches=patches)

    def _write(self, path: Path, table: _Table) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        def vectors(rows: np.ndarray) -> Any:
            return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), self.dim)

        windows = {"file": pa.array([table.files[i] for i in table.window_file], pa.string()),
                   "start": table.starts, "end": table.ends, "embedding": vectors(table.embeddings)}
        files = {"file": pa.array(table.files, pa.string()), "duration": table.durations,
                 "windows": table.windows_per_file,
                 "embedding": vectors(table.file_means(table.embeddings))}
        if table.patch_embeddings is not None:
            windows["patch_embedding"] = vectors(table.patch_embeddings)
            files["patch_embedding"] = vectors(table.file_means(table.patch_embeddings))
        with atomic_path(_companion(path, ".files.parquet")) as tmp:
            pq.write_table(pa.table(files), str(tmp))
        with atomic_path(path) as tmp:  # the main file last, as for .npy
            pq.write_table(pa.table(windows), str(tmp))


# Keyed by the names asttag.choices.EMBEDDING_FORMATS lists for the CLI (a test holds them equal).
EMBEDDING_WRITERS: dict[str, type[EmbeddingWriter]] = {
    cls.name: cls for cls in (SafetensorsEmbeddings, NpyEmbeddings, ParquetEmbeddings)
}



def embedding_format(path: str | Path) -> str:
    """The format an output path's suffix names (.safetensors, .npy or .parquet)."""
    suffix = Path(path).suffix.lower()
    for name, cls in EMBEDDING_WRITERS.items():
        if cls.suffix == suffix:
            return name
    raise ValueError(f"{path}: no embedding format has the suffix {suffix or '(none)'!r}; use "
                     + ", ".join(cls.suffix for cls in EMBEDDING_WRITERS.values()))


def make_embedding_writer(name: str, *, dim: int, patches: bool = False) -> EmbeddingWriter:
    if name not in EMBEDDING_WRITERS:
        raise ValueError(f"unknown embedding format {name!r}: choose from {', '.join(EMBEDDING_WRITERS)}")
    return EMBEDDING_WRITERS[name](dim=dim, patches=patches)


def read_embeddings(path: str | Path) -> dict[str, Any]:
    """An embedding output of any format as arrays: `files` and the tensors of the
    .safetensors layout (`window_embeddings`, `window_file`, ..., `file_embeddings`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.numpy import load_file

        with safe_open(str(path), framework="np") as f:
            files = json.loads((f.metadata() or {})["files"])
        return {"files": files, **load_file(str(path))}
    if suffix == ".npy":
        with open(_companion(path, ".csv"), encoding="utf-8", newline="") as f:
            index = list(csv.DictReader(f))
        with open(_companion(path, ".files.csv"), encoding="utf-8", newline="") as f:
            file_rows = list(csv.DictReader(f))
        files = [r["file"] for r in file_rows]
        position = {f: i for i, f in enumerate(files)}
        data = {
            "files": files, "window_embeddings": np.load(path),
            "window_file": np.asarray([position[r["file"]] for r in index], dtype=np.int64),
            "window_start": np.asarray([float(r["start"]) for r in index]),
            "window_end": np.asarray([float(r["end"]) for r in index]),
            "file_embeddings": np.load(_companion(path, ".files.npy")),
            "file_duration": np.asarray([float(r["duration"]) for r in file_rows]),
        }
        if _companion(path, ".patches.npy").exists():
            data["window_patch_embeddings"] = np.load(_companion(path, ".patches.npy"))
            data["file_patch_embeddings"] = np.load(_companion(path, ".files.patches.npy"))
        return data
    raise ValueError(f"{path}: read_embeddings reads .safetensors and .npy outputs")
