"""The training engine: a recipe run end to end, resumable, in one process or under torchrun.

What one optimiser step sees, in the official recipe's order:
  sampler (shuffled, or balanced: drawn by weight with replacement)
  -> decoding, with waveform mixup (per example with probability `mixup`: a random partner,
     lambda ~ Beta(10, 10), targets mixed with the same lambda)
  -> log-mel, cut or padded -> SpecAugment (before normalisation) -> normalisation
  -> noise augmentation -> model -> BCE or cross-entropy on the logits.

Determinism: what is drawn for an example (mixup partner, lambda) comes from a generator seeded
by (seed, epoch, position in the epoch), the epoch's order from (seed, epoch), and the global
generators (SpecAugment, noise) are re-seeded from (seed, epoch, process rank) when an epoch
starts. An epoch's
outcome therefore depends only on the weights and optimiser state it starts from, whatever the
number of DataLoader workers: that is what makes `resume` end with the same weights.

A run directory holds:
  recipe.yaml                          the resolved recipe (all `resume` needs)
  metrics.jsonl                        one JSON line per completed epoch
  checkpoints/epoch_NNN.safetensors    the model after each epoch, extra {"epoch", "metrics", "recipe"}
  training_state.pt                    optimiser, step counter, loss scaler; written last, it
                                       marks an epoch complete
  best.safetensors                     the epoch that scored best on validation
  averaged.safetensors                 the mean of the recipe's epoch window (when it averages)
  summary.json                         the outcome, written when training ends
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from .atomic import atomic_path, atomic_write_text
from .checkpoint import load as load_checkpoint
from .checkpoint import load_state, save
from .datasets import DatasetSplits, Example, load_dataset, target_vector
from .device import autocast, resolve_device, resolve_precision
from .features import FeatureConfig, normalize, spec_augment
from .inference import ClipDataset, example_logits, target_matrix
from .labels import LabelSet
from .metrics import evaluate_scores
from .model import AST, ASTConfig
from .recipes import Recipe, RecipeError

__all__ = [
    "TrainingError",
    "Runtime",
    "Observer",
    "TargetSource",
    "RunResult",
    "CrossValidation",
    "SampleKey",
    "EpochSampler",
    "TrainingSet",
    "learning_rate",
    "balanced_weights",
    "mix_waves",
    "add_noise",
    "augment",
    "training_loss",
    "build_model",
    "load_splits",
    "train",
    "resume",
    "cross_validate",
    "fold_directory",
    "close_distributed",
]

log = logging.getLogger(__name__)

RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.jsonl"
STATE_FILE = "training_state.pt"
CHECKPOINTS = "checkpoints"
BEST_FILE = "best.safetensors"
AVERAGED_FILE = "averaged.safetensors"
SUMMARY_FILE = "summary.json"
CROSS_VALIDATION_FILE = "cross_validation.json"

AUDIOSET_MODEL = "audioset-10-10-0.4593"  # the published model AST-P starts from
MIXUP_BETA = 10.0
NOISE_MAX_SHIFT = 10  # frames
BALANCE_NUMERATOR = 1000.0
BALANCE_SMOOTHING = 0.01


class TrainingError(RuntimeError):
    """A run that cannot start or go on: the message says what to change."""


@dataclass(frozen=True)
class Runtime:
    """How to run, as opposed to what to learn: may differ when a run is resumed.

    device: 'auto', 'cpu', 'cuda' or 'cuda:N' (under torchrun each process takes its
    LOCAL_RANK's GPU). workers: DataLoader processes. cache: a folder for decoded clips and
    log-mel frames, so later epochs skip decoding.
    """

    device: str = "auto"
    workers: int = 0
    cache: Path | None = None


class Observer:
    """Told how training goes (main process only); the CLI draws progress from it.

    Every method does nothing here: subclass and override what you need.
    """

    def run_started(self, run_dir: Path, recipe: Recipe, *, first_epoch: int) -> None: ...

    def epoch_started(self, epoch: int, *, epochs: int, steps: int) -> None: ...

    def step_done(self, loss: float) -> None: ...

    def validating(self, what: str) -> None: ...

    def epoch_done(self, record: dict) -> None: ...


class TargetSource(Protocol):
    """Where training targets come from, batch by batch: the hook a teacher model plugs into.

    Called with the model's input batch (augmented, normalised) and the data's targets (as
    mixup left them; soft scores where examples carry them); returns the targets to train on.
    """

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class RunResult:
    """A finished run: its directory and the contents of its summary.json."""

    run_dir: Path
    summary: dict

    @property
    def best_score(self) -> float | None:
        return self.summary["best"]["score"]

    @property
    def last_score(self) -> float | None:
        return self.summary["last"]["score"]


@dataclass(frozen=True)
class CrossValidation:
    """Runs over several folds, each held out in turn; `summary` has the mean and std."""

    run_dir: Path
    folds: dict[int, RunResult]
    summary: dict


# --------------------------------------------------------------------------- seeds


def derive_seed(*parts: int) -> int:
    """A seed mixed from integers: nearby inputs (epoch 1, epoch 2) give unrelated streams."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each DataLoader worker; give numpy and random the same seed, so nothing in a
    # worker repeats another's stream.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


# --------------------------------------------------------------------------- schedule


def learning_rate(recipe: Recipe, *, epoch: int, step: int) -> float:
    """The lr of optimiser step `step` (counted from 1 over the run) in `epoch` (from 1).

    As MultiStepLR stepped after each epoch with milestones range(lr_decay_start, 1000,
    lr_decay_step): epoch e's lr is decayed once per milestone below e. Warmup scales the
    first `warmup_steps` steps by step / warmup_steps.
    """
    decays = len(range(recipe.lr_decay_start, min(epoch, 1000), recipe.lr_decay_step))
    lr = recipe.lr * recipe.lr_decay**decays
    if step <= recipe.warmup_steps:
        lr *= step / recipe.warmup_steps
    return lr


# --------------------------------------------------------------------------- sampling


class SampleKey(NamedTuple):
    """Which example, and where in which epoch's order it was drawn."""

    index: int
    epoch: int
    position: int


def balanced_weights(examples: Sequence[Example], num_classes: int) -> np.ndarray:
    """Per example: the sum over its labels of 1000 / (class count + 0.01), the paper's weights.

    Soft targets count fractionally, weighting each class by the example's score for it.
    """
    counts = np.zeros(num_classes)
    for example in examples:
        counts += target_vector(example, num_classes)
    class_weights = BALANCE_NUMERATOR / (counts + BALANCE_SMOOTHING)
    return np.array([target_vector(e, num_classes) @ class_weights for e in examples])


class EpochSampler(Sampler):
    """One epoch's order of examples as SampleKeys, this process's share of it.

    Shuffled, or (with `weights`) drawn by weight with replacement as WeightedRandomSampler
    does. The order depends on (seed, epoch) alone. With several processes it is padded by
    repeating its start to a multiple of the process count and dealt out round-robin, as
    DistributedSampler does; every process sees the same global positions.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        weights: np.ndarray | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if size < 1:
            raise TrainingError("the training set is empty")
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size)

    def __iter__(self) -> Iterator[SampleKey]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, 0))
        if self.weights is None:
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = torch.multinomial(self.weights, self.size, replacement=True, generator=generator).tolist()
        total = len(self) * self.world_size
        order = (order * math.ceil(total / len(order)))[:total]
        for position in range(self.rank, total, self.world_size):
            yield SampleKey(order[position], self.epoch, position)


# --------------------------------------------------------------------------- data and augmentation


def mix_waves(first: torch.Tensor, second: torch.Tensor, lam: float) -> torch.Tensor:
    """lam * first + (1 - lam) * second, `second` cut or zero-padded to the first's length."""
    n = first.numel()
    second = second[:n] if second.numel() >= n else F.pad(second, (0, n - second.numel()))
    return lam * first + (1 - lam) * second


class TrainingSet(Dataset):
    """Raw log-mel input (target_length, mel bins) and target vector of each SampleKey.

    With probability `mixup` an example is mixed on the waveform with a random partner, the
    targets with the same lambda; the draws come from a generator seeded by the key, so they
    do not depend on which worker decodes it.
    """

    def __init__(self, clips: ClipDataset, num_classes: int, *, mixup: float, seed: int) -> None:
        self.clips, self.num_classes, self.mixup, self.seed = clips, num_classes, mixup, seed

    def __len__(self) -> int:
        return len(self.clips)

    def _target(self, index: int) -> np.ndarray:
        return target_vector(self.clips.examples[index], self.num_classes)

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor]:
        index = key.index
        rng = np.random.default_rng([self.seed, key.epoch, key.position])
        if self.mixup and rng.random() < self.mixup:
            partner = int(rng.integers(len(self.clips)))
            lam = float(rng.beta(MIXUP_BETA, MIXUP_BETA))
            wave = mix_waves(self.clips.wave(index), self.clips.wave(partner), lam)
            target = lam * self._target(index) + (1 - lam) * self._target(partner)
            return self.clips.log_mel_of(wave), torch.from_numpy(target.astype(np.float32))
        return self.clips.log_mel(index), torch.from_numpy(self._target(index))


def add_noise(x: torch.Tensor) -> torch.Tensor:
    """The recipe's noise augmentation of normalised input (B, T, F), per example:
    add U(0, 1) noise scaled by U(0, 1) / 10, then roll along time by a whole number of
    frames in [-10, 10)."""
    batch, frames, _ = x.shape
    x = x + torch.rand_like(x) * torch.rand(batch, 1, 1, device=x.device) / 10
    shifts = torch.randint(-NOISE_MAX_SHIFT, NOISE_MAX_SHIFT, (batch, 1), device=x.device)
    source = (torch.arange(frames, device=x.device) - shifts) % frames  # torch.roll, per row
    return x.gather(1, source.unsqueeze(-1).expand_as(x))


def augment(raw: torch.Tensor, recipe: Recipe, features: FeatureConfig) -> torch.Tensor:
    """Model input from a batch of raw log-mel (B, T, F): SpecAugment, normalisation, noise."""
    x = spec_augment(raw, freq_mask=recipe.freqm, time_mask=recipe.timem)
    x = normalize(x, features)
    return add_noise(x) if recipe.noise else x


def training_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """'bce': binary cross-entropy on logits. 'ce': cross-entropy against the target
    distributions, so mixed or soft targets stay soft (not collapsed to an argmax)."""
    logits = logits.float()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets)
    if kind == "ce":
        return F.cross_entropy(logits, targets)
    raise RecipeError(f"unknown loss {kind!r}: use bce or ce")


# --------------------------------------------------------------------------- model and data


def load_splits(recipe: Recipe) -> DatasetSplits:
    """The data set a recipe trains on (its data_dir, dataset layout and reader options)."""
    if recipe.data_dir is None:
        raise TrainingError(f"recipe {recipe.name} names no data: pass --data-dir")
    options = {k: v for k, v in recipe.data.items() if v is not None}
    if recipe.dataset == "audioset" and Path(recipe.data_dir).suffix.lower() == ".json":
        # `train` picks the segments CSVs of the folder layout; a manifest is its own train list.
        options.pop("train", None)
    splits = load_dataset(recipe.dataset, recipe.data_dir, **options)
    if not splits.train:
        raise TrainingError(f"{recipe.data_dir}: the training split is empty")
    return splits


def _feature_config(recipe: Recipe) -> FeatureConfig:
    return FeatureConfig(num_mel_bins=recipe.num_mel_bins, target_length=recipe.target_length,
                         mean=recipe.norm_mean, std=recipe.norm_std)


def build_model(recipe: Recipe, labels: LabelSet) -> AST:
    """The model a recipe starts from: a head for `labels`, the encoder as `recipe.init` says.

    none: random (seeded by recipe.seed); imagenet: DeiT weights (recipe.imagenet_weights, else
    a timm download); audioset: the published AudioSet model; anything else: a checkpoint path
    or model name. Transferred encoders keep their own architecture (size and model overrides
    apply to none and imagenet only); a checkpoint with this very label set and input keeps its
    head too, so a run can go on from another.
    """
    from .hub import load_model
    from .pretrained import audioset_init, imagenet_init

    features = _feature_config(recipe)
    torch.manual_seed(recipe.seed)
    if recipe.init in ("none", "imagenet"):
        config = ASTConfig.from_preset(
            recipe.size,
            **{"num_classes": len(labels), "num_mel_bins": recipe.num_mel_bins,
               "target_length": recipe.target_length, "stride": recipe.stride, **recipe.model},
        )
        if recipe.init == "none":
            return AST(config, features=features, labels=labels)
        return imagenet_init(config, weights=recipe.imagenet_weights, features=features, labels=labels)
    source = load_model(AUDIOSET_MODEL if recipe.init == "audioset" else recipe.init, device="cpu")
    if not isinstance(source, AST):
        raise TrainingError(f"{recipe.init}: an ensemble bundle has no one encoder to start from; "
                            "give one model")
    if recipe.model:
        log.warning("recipe %s: model overrides are ignored: the architecture comes from %s",
                    recipe.name, recipe.init)
    config = source.config.replace(num_classes=len(labels), num_mel_bins=recipe.num_mel_bins,
                                   target_length=recipe.target_length, stride=recipe.stride)
    if source.config == config and source.labels == labels:
        model = AST(config, features=features, labels=labels)
        load_state(model, source.state_dict(), source=recipe.init)
        return model
    return audioset_init(source, config, labels=labels, features=features)


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class _Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def broadcast(self, value):
        """The main process's `value`, on every process."""
        if self.world_size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list:
        """Every process's `value`, by rank."""
        if self.world_size == 1:
            return [value]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, value)
        return out


def _processes(device: str) -> _Processes:
    """This process's place in a torchrun job; joins the process group on first use."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return _Processes()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if cuda:  # NCCL's collectives (object broadcasts too) run on the current GPU
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return _Processes(dist.get_rank(), dist.get_world_size(), local_rank)


def close_distributed() -> None:
    """Leave the torchrun process group, if this process joined one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _device(name: str, processes: _Processes) -> torch.device:
    try:
        device = resolve_device(name)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    if device.type == "cuda" and processes.world_size > 1:
        if device.index is not None:
            raise TrainingError("under torchrun each process takes its own GPU: pass --device cuda or auto")
        device = torch.device("cuda", processes.local_rank)
    return device


# --------------------------------------------------------------------------- run directory


class _RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def checkpoint(self, epoch: int) -> Path:
        return self.path / CHECKPOINTS / f"epoch_{epoch:03d}.safetensors"

    def started(self) -> bool:
        return self.file(RECIPE_FILE).exists()

    def read_recipe(self) -> Recipe:
        from .recipes import load_recipe

        if not self.started():
            raise TrainingError(f"{self.path}: not a training run directory (no {RECIPE_FILE})")
        return load_recipe(self.file(RECIPE_FILE))

    def read_state(self) -> dict | None:
        file = self.file(STATE_FILE)
        if not file.exists():
            return None
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as e:  # damaged or not ours: say which file, whatever torch raised
            raise TrainingError(f"{file}: unreadable training state ({e})") from None

    def read_metrics(self) -> list[dict]:
        file = self.file(METRICS_FILE)
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text("utf-8").splitlines() if line.strip()]

    def write_metrics(self, records: list[dict]) -> None:
        atomic_write_text(self.file(METRICS_FILE), "".join(json.dumps(r) + "\n" for r in records))

    def write_json(self, name: str, data: dict) -> None:
        atomic_write_text(self.file(name), json.dumps(data, indent=2) + "\n")


def _default_run_dir(recipe: Recipe) -> Path:
    base = Path("runs") / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _json_number(value: float) -> float | None:
    # JSON has no NaN: an undefined metric (no class scored) is null.
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- the loop


class _Trainer:
    def __init__(
        self,
        recipe: Recipe,
        run: _RunDir,
        splits: DatasetSplits,
        model: AST,
        *,
        runtime: Runtime,
        processes: _Processes,
        observer: Observer,
        targets: TargetSource | None,
    ) -> None:
        self.recipe, self.run, self.splits, self.runtime = recipe, run, splits, runtime
        self.processes, self.targets = processes, targets
        self.observer = observer if processes.is_main else Observer()
        self.device = _device(runtime.device, processes)
        try:
            self.precision = resolve_precision(recipe.precision, self.device)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        self.metric = recipe.metric if recipe.metric != "auto" else (
            "mAP" if splits.labels.multi_label else "accuracy")
        parts = processes.world_size * recipe.grad_accum
        if recipe.batch_size % parts:
            raise TrainingError(
                f"batch_size {recipe.batch_size} does not split into {processes.world_size} "
                f"process(es) x {recipe.grad_accum} accumulation step(s)"
            )
        self.micro_batch = recipe.batch_size // parts
        self.model = model.to(self.device)
        self.net: torch.nn.Module = self.model
        if processes.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.Adam(
            [p for p in self.model.parameters() if p.requires_grad], lr=recipe.lr,
            weight_decay=recipe.weight_decay, betas=recipe.betas,
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.global_step = 0
        num_classes = len(splits.labels)
        clips = ClipDataset(splits.train, self.model.features, cache=runtime.cache)
        weights = balanced_weights(splits.train, num_classes) if recipe.balanced_sampler else None
        self.sampler = EpochSampler(len(clips), seed=recipe.seed, weights=weights,
                                    rank=processes.rank, world_size=processes.world_size)
        # Its own generator: drawing worker seeds must not move the global stream SpecAugment
        # uses, or a resumed run (new loader) would diverge from an uninterrupted one.
        self.loader = DataLoader(
            TrainingSet(clips, num_classes, mixup=recipe.mixup, seed=recipe.seed),
            batch_size=self.micro_batch, sampler=self.sampler, num_workers=runtime.workers,
            worker_init_fn=_seed_worker, generator=torch.Generator().manual_seed(recipe.seed),
            persistent_workers=runtime.workers > 0, pin_memory=self.device.type == "cuda",
        )

    # ------------------------------------------------------------------ state

    def restore(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.global_step = int(state["global_step"])
        if int(state.get("world_size", 1)) != self.processes.world_size:
            log.warning("resuming with %d process(es) where the run began with %d: the order of "
                        "examples differs from an uninterrupted run",
                        self.processes.world_size, state.get("world_size", 1))

    def _state(self, epoch: int) -> dict:
        return {
            "epoch": epoch,
            "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "world_size": self.processes.world_size,
        }

    # ------------------------------------------------------------------ epochs

    def fit(self, first_epoch: int, records: list[dict]) -> RunResult:
        self.observer.run_started(self.run.path, self.recipe, first_epoch=first_epoch)
        if not self.splits.valid:
            log.warning("no validation split: every epoch counts as the best so far (the last wins)")
        for epoch in range(first_epoch, self.recipe.epochs + 1):
            # Per process: each draws its own SpecAugment masks and noise.
            seed_everything(derive_seed(self.recipe.seed, epoch, 1, self.processes.rank))
            record = self._train_epoch(epoch)
            if self.splits.valid:
                self.observer.validating("validation")
                valid = self._evaluate(self.model, self.splits.valid)
                record["valid_loss"] = valid.pop("loss")
                record.update(valid, score=valid[self.metric])
            records.append(record)
            log.info("epoch %d: %s", epoch, json.dumps(record))
            if self.processes.is_main:
                self._save_epoch(epoch, records)
            self.processes.barrier()
            self.observer.epoch_done(record)
        return self._finish(records)

    def _train_epoch(self, epoch: int) -> dict:
        recipe, accum = self.recipe, self.recipe.grad_accum
        self.sampler.set_epoch(epoch)
        batches = len(self.loader)
        self.observer.epoch_started(epoch, epochs=recipe.epochs, steps=math.ceil(batches / accum))
        self.net.train()
        total = torch.zeros(2, dtype=torch.float64)
        started = time.perf_counter()
        for i, (raw, target) in enumerate(self.loader):
            x = augment(raw.to(self.device, non_blocking=True), recipe, self.model.features)
            y = target.to(self.device, non_blocking=True)
            if self.targets is not None:
                y = self.targets(x, y)
            stepping = (i + 1) % accum == 0 or i + 1 == batches
            # Gradients are all-reduced only on the micro-batch that steps.
            no_sync = getattr(self.net, "no_sync", None)
            with no_sync() if no_sync is not None and not stepping else contextlib.nullcontext():
                with autocast(self.device, self.precision):
                    logits = self.net(x)
                loss = training_loss(logits, y, recipe.loss)
                self.scaler.scale(loss / accum).backward()
            if stepping:
                self._step(epoch)
            value = loss.item()
            total += torch.tensor([value * len(x), len(x)], dtype=torch.float64)
            if stepping:
                self.observer.step_done(value)
        seconds = time.perf_counter() - started
        if self.processes.world_size > 1:
            total = total.to(self.device)  # NCCL reduces GPU tensors only
            torch.distributed.all_reduce(total)
            total = total.cpu()
        return {
            "epoch": epoch,
            "steps": self.global_step,
            "lr": learning_rate(recipe, epoch=epoch, step=self.global_step),
            "train_loss": float(total[0] / total[1]),
            "train_seconds": round(seconds, 3),
            "samples_per_second": round(float(total[1]) / seconds, 2),
        }

    def _step(self, epoch: int) -> None:
        self.global_step += 1
        lr = learning_rate(self.recipe, epoch=epoch, step=self.global_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _evaluate(self, model: AST, examples: Sequence[Example]) -> dict:
        """Loss (on logits) and metrics of `model` on `examples`, shared out over processes."""
        p = self.processes
        shard = list(examples)[p.rank :: p.world_size]
        logits = example_logits(
            model, shard, batch_size=self.recipe.valid_batch_size or self.recipe.batch_size,
            device=self.device, workers=self.runtime.workers, precision=self.precision,
            cache=self.runtime.cache,
        )
        full = np.zeros((len(examples), len(model.labels)), dtype=np.float32)
        for rank, part in enumerate(p.gather(logits)):
            full[rank :: p.world_size] = part
        targets = target_matrix(examples, len(model.labels))
        logits_t = torch.from_numpy(full)
        loss = training_loss(logits_t, torch.from_numpy(targets), self.recipe.loss).item()
        m = evaluate_scores(model.probabilities(logits_t).numpy(), targets, labels=model.labels)
        return {"loss": loss, "accuracy": m.accuracy, "mAP": _json_number(m.mAP),
                "mean_auc": _json_number(m.mean_auc), "d_prime": _json_number(m.d_prime)}

    def _save_epoch(self, epoch: int, records: list[dict]) -> None:
        record = records[-1]
        extra = {"epoch": epoch, "metrics": _metrics(record), "recipe": self.recipe.name}
        save(self.model, self.run.checkpoint(epoch), extra=extra)
        self.run.write_metrics(records)
        if _best_epoch(records) == epoch:
            save(self.model, self.run.file(BEST_FILE), extra={**extra, "selected_by": self.metric})
        # Written last: its epoch is the one a resume goes on from.
        with atomic_path(self.run.file(STATE_FILE)) as tmp:
            torch.save(self._state(epoch), tmp)

    # ------------------------------------------------------------------ the end

    def _finish(self, records: list[dict]) -> RunResult:
        best = _best_epoch(records)
        summary = {
            "run_dir": str(self.run.path),
            "recipe": self.recipe.name,
            "metric": self.metric,
            "epochs": len(records),
            "best_epoch": best,
            "best": _metrics(records[best - 1]),
            "last": _metrics(records[-1]),
        }
        averaged = self._average()
        if averaged is not None:
            summary["averaged"] = averaged
        if self.splits.test:
            self.observer.validating("test")
            summary["test"] = {"best": self._score(load_checkpoint(self.run.file(BEST_FILE)), self.splits.test)}
            if averaged is not None:
                summary["test"]["averaged"] = self._score(
                    load_checkpoint(self.run.file(AVERAGED_FILE)), self.splits.test)
        if self.processes.is_main:
            self.run.write_json(SUMMARY_FILE, summary)
        self.processes.barrier()
        return RunResult(self.run.path, summary)

    def _score(self, model: AST, examples: Sequence[Example]) -> dict:
        result = self._evaluate(model, examples)
        return {**result, "score": result[self.metric]}

    def _average(self) -> dict | None:
        """Average the recipe's epoch window into averaged.safetensors; its validation scores."""
        from .averaging import average_checkpoints

        if self.recipe.average_epochs is None:
            return None
        first, last = self.recipe.average_epochs
        last = min(last, self.recipe.epochs)
        if first > last:
            log.warning("recipe %s averages epochs %d-%d but runs %d: no averaged model",
                        self.recipe.name, *self.recipe.average_epochs, self.recipe.epochs)
            return None
        model = average_checkpoints(self.run.checkpoint(e) for e in range(first, last + 1))
        result = {"epochs": [first, last]}
        if self.splits.valid:
            self.observer.validating("averaged model")
            result.update(self._score(model, self.splits.valid))
        if self.processes.is_main:
            save(model, self.run.file(AVERAGED_FILE),
                 extra={"averaged_epochs": [first, last], "metrics": result, "recipe": self.recipe.name})
        self.processes.barrier()
        return result


def _metrics(record: dict) -> dict:
    """What checkpoints and the summary keep of an epoch's record (score: None unvalidated)."""
    kept = ("epoch", "train_loss", "valid_loss", "accuracy", "mAP", "mean_auc", "d_prime")
    return {**{k: record[k] for k in kept if k in record}, "score": record.get("score")}


def _best_epoch(records: list[dict]) -> int:
    """The epoch with the highest score (the earliest on ties); without scores, the last."""
    scored = [(r["score"], -r["epoch"]) for r in records if r.get("score") is not None]
    if not scored:
        return records[-1]["epoch"]
    return -max(scored)[1]


# --------------------------------------------------------------------------- entry points


def train(
    recipe: Recipe,
    run_dir: str | Path | None = None,
    *,
    runtime: Runtime = Runtime(),
    observer: Observer | None = None,
    targets: TargetSource | None = None,
) -> RunResult:
    """Run `recipe` into a new run directory (default: runs/<recipe>-<time>).

    Under torchrun every process calls this; the main process writes the directory.
    `targets` replaces the data's targets batch by batch (see TargetSource).
    """
    processes = _processes(runtime.device)
    recipe = recipe.resolved()
    run = _RunDir(processes.broadcast(Path(run_dir) if run_dir else _default_run_dir(recipe)))
    if run.started():
        raise TrainingError(f"{run.path} already holds a training run: resume it (--resume "
                            f"{run.path}) or choose another output folder")
    splits = load_splits(recipe)
    trainer = _Trainer(recipe, run, splits, build_model(recipe, splits.labels), runtime=runtime,
                       processes=processes, observer=observer or Observer(), targets=targets)
    # Nothing is written before every check passed, and before every process checked the folder.
    processes.barrier()
    if processes.is_main:
        atomic_write_text(run.file(RECIPE_FILE), recipe.to_yaml())
    return trainer.fit(1, [])


def resume(
    run_dir: str | Path,
    *,
    runtime: Runtime = Runtime(),
    observer: Observer | None = None,
    targets: TargetSource | None = None,
) -> RunResult:
    """Go on with the run in `run_dir` after its last completed epoch, to the same end.

    A run whose epochs are all done is only finished (averaging, test, summary) again.
    """
    processes = _processes(runtime.device)
    run = _RunDir(run_dir)
    recipe = run.read_recipe()
    state = run.read_state()
    splits = load_splits(recipe)
    if state is None:
        model, done = build_model(recipe, splits.labels), 0
    else:
        done = int(state["epoch"])
        model = load_checkpoint(run.checkpoint(done))
        if model.labels != splits.labels:
            raise TrainingError(f"{run.path}: the data's label set is not the one this run trains on")
    records = [r for r in run.read_metrics() if r["epoch"] <= done]
    if len(records) != done:
        raise TrainingError(f"{run.file(METRICS_FILE)}: holds {len(records)} of the {done} completed epochs")
    trainer = _Trainer(recipe, run, splits, model, runtime=runtime, processes=processes,
                       observer=observer or Observer(), targets=targets)
    if state is not None:
        trainer.restore(state)
    return trainer.fit(done + 1, records)


def fold_directory(root: str | Path, fold: int) -> Path:
    """Where a cross-validation under `root` keeps the run of `fold`."""
    return Path(root) / f"fold_{fold}"


def cross_validate(
    recipe: Recipe,
    run_dir: str | Path | None = None,
    *,
    folds: Sequence[int] = (1, 2, 3, 4, 5),
    runtime: Runtime = Runtime(),
    observer: Observer | None = None,
    go_on: bool = False,
) -> CrossValidation:
    """Train one run per fold (data option `fold` held out) under run_dir/fold_N.

    The summary has each fold's best and last score and their mean and standard deviation
    over folds, as the paper reports ESC-50. With `go_on`, finished folds are kept, a started
    one is resumed and the others run: how an interrupted cross-validation continues.
    """
    processes = _processes(runtime.device)
    recipe = recipe.resolved()
    root = Path(processes.broadcast(Path(run_dir) if run_dir else _default_run_dir(recipe)))
    if not go_on and (root / CROSS_VALIDATION_FILE).exists():
        raise TrainingError(f"{root} already holds a cross-validation: resume it or choose another folder")
    results: dict[int, RunResult] = {}
    if processes.is_main:  # written first: it is what marks the folder as a cross-validation
        _RunDir(root).write_json(CROSS_VALIDATION_FILE, _cross_summary(recipe, results, folds))
    for fold in folds:
        fold_dir = _RunDir(fold_directory(root, fold))
        if go_on and fold_dir.file(SUMMARY_FILE).exists():
            results[fold] = RunResult(fold_dir.path, json.loads(fold_dir.file(SUMMARY_FILE).read_text("utf-8")))
        elif go_on and fold_dir.started():
            results[fold] = resume(fold_dir.path, runtime=runtime, observer=observer)
        else:
            fold_recipe = recipe.replace(data={**recipe.data, "fold": fold})
            results[fold] = train(fold_recipe, fold_dir.path, runtime=runtime, observer=observer)
        if processes.is_main:
            _RunDir(root).write_json(CROSS_VALIDATION_FILE, _cross_summary(recipe, results, folds))
    return CrossValidation(root, results, _cross_summary(recipe, results, folds))


def _cross_summary(recipe: Recipe, results: dict[int, RunResult], folds: Sequence[int]) -> dict:
    def spread(scores: list[float | None]) -> dict:
        values = np.array([s for s in scores if s is not None], dtype=np.float64)
        if not values.size:
            return {"mean": None, "std": None}
        return {"mean": float(values.mean()), "std": float(values.std())}

    done = [results[f] for f in folds if f in results]
    return {
        "recipe": recipe.name,
        "folds": list(folds),
        "completed": sorted(results),
        "metric": done[0].summary["metric"] if done else None,
        "per_fold": {str(f): {"best": r.best_score, "last": r.last_score, "run_dir": str(r.run_dir)}
                     for f, r in results.items()},
        "best": spread([r.best_score for r in done]),
        "last": spread([r.last_score for r in done]),
    }
