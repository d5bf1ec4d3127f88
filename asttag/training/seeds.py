"""Seeds: derived from (seed, epoch, ...) so that what an epoch draws depends on nothing else."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["derive_seed", "seed_everything", "seed_worker"]


def derive_seed(*parts: int) -> int:
    """A seed mixed from integers: nearby inputs (epoch 1, epoch 2) give unrelated streams."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    # torch seeds each DataLoader worker; give numpy and random the same seed, so nothing in a
    # worker repeats another's stream.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
