"""torchrun's process group: joined once per process, on first use, and left when it exits.

torch names the default group by a counter that `destroy_process_group` resets, so a process
that left its group and joined again would rendezvous under the first group's keys in torchrun's
store and reach for peers that answered them long ago (connection refused, or a hang). Staying
joined until exit lets one process run any number of sharded jobs: tag, embed, train.
"""

from __future__ import annotations

import atexit
from datetime import timedelta

import torch.distributed as dist

__all__ = ["join"]


def join(backend: str, *, timeout: timedelta | None = None) -> None:
    """Join torchrun's group with `backend` unless this process already has; the first join's
    backend and `timeout` (how long one rank waits for the others; torch's default if None)
    hold for every later job in the process."""
    if dist.is_initialized():
        return
    dist.init_process_group(backend, timeout=timeout)
    atexit.register(_leave)


def _leave() -> None:
    # At exit only: a process that left and joined again would meet the stale keys above.
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
