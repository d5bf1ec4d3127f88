"""One process or many under torchrun: rank, collectives, and each process's device."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .. import processgroup
from ..device import resolve_device
from ..errors import about
from .interface import TrainingError

__all__ = ["Processes", "processes", "process_device"]


@dataclass(frozen=True)
class Processes:
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


def processes(device: str) -> Processes:
    """This process's place in a torchrun job; joins the process group on first use."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Processes()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if cuda:  # NCCL's collectives (object broadcasts too) run on the current GPU
            torch.cuda.set_device(local_rank)
        processgroup.join("nccl" if cuda else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), local_rank)


def process_device(name: str, processes: Processes) -> torch.device:
    try:
        device = resolve_device(name)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    if device.type == "cuda" and processes.world_size > 1:
        if device.index is not None:
            raise about(TrainingError("under torchrun each process takes its own GPU: choose device "
                                      "cuda or auto"), "device")
        # torch's stub types device.index as int, so mypy takes the raise above as certain; the
        # index is None for a bare "cuda".
        device = torch.device("cuda", processes.local_rank)  # type: ignore[unreachable]
    return device
