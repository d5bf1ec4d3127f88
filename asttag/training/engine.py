"""The training loop: epochs of optimiser steps, validation, checkpoints, averaging, resume."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..atomic import atomic_path, atomic_write_text
from ..averaging import average_checkpoints
from ..checkpoint import load as load_checkpoint
from ..checkpoint import save
from ..datasets import DatasetSplits, Example
from ..device import autocast, resolve_precision
from ..errors import about
from ..inference import ClipDataset, example_logits, target_matrix
from ..metrics import evaluate_scores
from ..model import AST
from ..recipes import Recipe, load_recipe
from ..rundir import (
    AVERAGED_FILE,
    BEST_FILE,
    CROSS_VALIDATION_FILE,
    METRICS_FILE,
    RECIPE_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    RunDirectory,
    fold_directory,
)
from ..thresholds import KEY as THRESHOLD_KEY
from ..thresholds import calibrate
from .augmentation import TrainingSet, augment
from .distributed import Processes, process_device
from .distributed import processes as join_processes
from .interface import CrossValidation, Observer, RunResult, Runtime, TargetSource, TrainingError
from .loss import training_loss
from .sampling import EpochSampler, balanced_weights
from .schedule import learning_rate
from .seeds import derive_seed, seed_everything, seed_worker
from .setup import build_model, load_splits, resolve

__all__ = ["train", "resume", "cross_validate"]

log = logging.getLogger(__name__)


def _json_number(value: float) -> float | None:
    # JSON has no NaN: an undefined metric (no class scored) is null.
    value = float(value)
    return value if math.isfinite(value) else None


class _Trainer:
    def __init__(
        self,
        recipe: Recipe,
        run: RunDirectory,
        splits: DatasetSplits,
        model: AST,
        *,
        runtime: Runtime,
        processes: Processes,
        observer: Observer,
        targets: TargetSource | None,
    ) -> None:
        self.recipe, self.run, self.splits, self.runtime = recipe, run, splits, runtime
        self.processes, self.targets = processes, targets
        self.observer = observer if processes.is_main else Observer()
        self.device = process_device(runtime.device, processes)
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
            worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(recipe.seed),
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
        probabilities = model.probabilities(logits_t).numpy()
        m = evaluate_scores(probabilities, targets, labels=model.labels)
        # The event threshold the checkpoint recommends, chosen on these held-out clips.
        threshold = calibrate(probabilities, targets, held_out=f"{len(examples)} held-out clips")
        return {"loss": loss, "accuracy": m.accuracy, "mAP": _json_number(m.mAP),
                "mean_auc": _json_number(m.mean_auc), "d_prime": _json_number(m.d_prime),
                THRESHOLD_KEY: threshold.to_dict()}

    def _save_epoch(self, epoch: int, records: list[dict]) -> None:
        record = records[-1]
        extra = {"epoch": epoch, "metrics": _metrics(record), "recipe": self.recipe.name}
        if THRESHOLD_KEY in record:
            extra[THRESHOLD_KEY] = record[THRESHOLD_KEY]
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
            test = {"best": self._score(load_checkpoint(self.run.file(BEST_FILE)), self.splits.test)}
            if averaged is not None:
                test["averaged"] = self._score(
                    load_checkpoint(self.run.file(AVERAGED_FILE)), self.splits.test)
            summary["test"] = test
        if self.processes.is_main:
            self.run.write_json(SUMMARY_FILE, summary)
        self.processes.barrier()
        return RunResult(self.run.path, summary)

    def _score(self, model: AST, examples: Sequence[Example]) -> dict:
        result = self._evaluate(model, examples)
        return {**result, "score": result[self.metric]}

    def _average(self) -> dict | None:
        """Average the recipe's epoch window into averaged.safetensors; its validation scores."""
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
            extra = {"averaged_epochs": [first, last], "metrics": result, "recipe": self.recipe.name}
            if THRESHOLD_KEY in result:
                extra[THRESHOLD_KEY] = result[THRESHOLD_KEY]
            save(model, self.run.file(AVERAGED_FILE), extra=extra)
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
    processes = join_processes(runtime.device)
    recipe, source = resolve(recipe)
    chosen = Path(run_dir) if run_dir else RunDirectory.new(recipe.name).path
    run = RunDirectory(processes.broadcast(chosen))
    if run.started():
        raise about(TrainingError(f"{run.path} already holds a training run: resume it or "
                                  "choose another run directory"), "run_dir")
    splits = load_splits(recipe)
    trainer = _Trainer(recipe, run, splits, build_model(recipe, splits.labels, source=source),
                       runtime=runtime, processes=processes, observer=observer or Observer(),
                       targets=targets)
    # Nothing is written before every check passed, and before every process checked the folder.
    processes.barrier()
    if processes.is_main:
        atomic_write_text(run.file(RECIPE_FILE), recipe.to_yaml())
    return trainer.fit(1, [])


def _read_recipe(run: RunDirectory) -> Recipe:
    if not run.started():
        raise TrainingError(f"{run.path}: not a training run directory (no {RECIPE_FILE})")
    return load_recipe(run.file(RECIPE_FILE))


def _read_state(run: RunDirectory) -> dict | None:
    file = run.file(STATE_FILE)
    if not file.exists():
        return None
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (damaged or not ours: say which file, whatever torch raised)
        raise TrainingError(f"{file}: unreadable training state ({e})") from None


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
    processes = join_processes(runtime.device)
    run = RunDirectory(run_dir)
    recipe = _read_recipe(run)
    state = _read_state(run)
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
    processes = join_processes(runtime.device)
    recipe, _ = resolve(recipe)
    chosen = Path(run_dir) if run_dir else RunDirectory.new(recipe.name).path
    root = Path(processes.broadcast(chosen))
    if not go_on and (root / CROSS_VALIDATION_FILE).exists():
        raise TrainingError(f"{root} already holds a cross-validation: resume it or choose another folder")
    results: dict[int, RunResult] = {}
    if processes.is_main:  # written first: it is what marks the folder as a cross-validation
        RunDirectory(root).write_json(CROSS_VALIDATION_FILE, _cross_summary(recipe, results, folds))
    for fold in folds:
        fold_dir = RunDirectory(fold_directory(root, fold))
        if go_on and fold_dir.file(SUMMARY_FILE).exists():
            results[fold] = RunResult(fold_dir.path, json.loads(fold_dir.file(SUMMARY_FILE).read_text("utf-8")))
        elif go_on and fold_dir.started():
            results[fold] = resume(fold_dir.path, runtime=runtime, observer=observer)
        else:
            fold_recipe = recipe.replace(data={**recipe.data, "fold": fold})
            results[fold] = train(fold_recipe, fold_dir.path, runtime=runtime, observer=observer)
        if processes.is_main:
            RunDirectory(root).write_json(CROSS_VALIDATION_FILE, _cross_summary(recipe, results, folds))
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


def resume_training(
    run_dir: str | Path, *, runtime: Runtime = Runtime(), observer: Observer | None = None
) -> RunResult | CrossValidation:
    """Go on with the training run or the cross-validation in `run_dir` where it stopped."""
    root = Path(run_dir)
    record = root / CROSS_VALIDATION_FILE
    if not record.exists():
        return resume(root, runtime=runtime, observer=observer)
    folds = json.loads(record.read_text("utf-8"))["folds"]
    recipe = load_recipe(fold_directory(root, folds[0]) / RECIPE_FILE)
    return cross_validate(recipe, root, folds=folds, runtime=runtime, observer=observer,
                          go_on=True)
