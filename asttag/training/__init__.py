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
starts. An epoch's outcome therefore depends only on the weights and optimiser state it starts
from, whatever the number of DataLoader workers: that is what makes `resume` end with the same
weights.

The engine is split by job: `interface` (Runtime, Observer, TargetSource, RunResult,
CrossValidation, TrainingError), `seeds`, `schedule` (learning_rate), `sampling` (EpochSampler,
balanced weights), `augmentation` (mixup, SpecAugment, noise), `loss`, `setup` (the data and
the initial model), `distributed` (torchrun processes) and `engine` (the loop, train, resume,
cross_validate, resume_training: a run or a cross-validation). The run directory's layout is public, in asttag.rundir.
"""

from ..rundir import (
    AVERAGED_FILE,
    BEST_FILE,
    CHECKPOINTS,
    CROSS_VALIDATION_FILE,
    METRICS_FILE,
    RECIPE_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    fold_directory,
)
from .augmentation import TrainingSet, add_noise, augment, mix_waves
from .engine import cross_validate, resume, resume_training, train
from .interface import CrossValidation, Observer, RunResult, Runtime, TargetSource, TrainingError
from .loss import training_loss
from .sampling import EpochSampler, SampleKey, balanced_weights
from .schedule import learning_rate
from .setup import AUDIOSET_MODEL, build_model, load_splits, resolve

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
    "resolve",
    "load_splits",
    "train",
    "resume",
    "resume_training",
    "cross_validate",
    "fold_directory",
    "AUDIOSET_MODEL",
    "RECIPE_FILE",
    "METRICS_FILE",
    "STATE_FILE",
    "CHECKPOINTS",
    "BEST_FILE",
    "AVERAGED_FILE",
    "SUMMARY_FILE",
    "CROSS_VALIDATION_FILE",
]
