"""Training input: waveform mixup while decoding, then SpecAugment, normalisation and noise."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..datasets import target_vector
from ..features import FeatureConfig, normalize, spec_augment
from ..inference import ClipDataset
from ..recipes import Recipe
from .sampling import SampleKey

__all__ = ["mix_waves", "TrainingSet", "add_noise", "augment"]

MIXUP_BETA = 10.0
NOISE_MAX_SHIFT = 10  # frames


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
