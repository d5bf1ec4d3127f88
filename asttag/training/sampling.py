"""The order examples are drawn in: shuffled or balanced, by (seed, epoch), shared over processes."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Sampler

from ..datasets import Example, target_vector
from .interface import TrainingError
from .seeds import derive_seed

__all__ = ["SampleKey", "balanced_weights", "EpochSampler"]

BALANCE_NUMERATOR = 1000.0
BALANCE_SMOOTHING = 0.01


@dataclass(frozen=True)
class SampleKey:
    """Which example, and where in which epoch's order it was drawn.

    Not a NamedTuple: its field `index` would hide tuple.index.
    """

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
