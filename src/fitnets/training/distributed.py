"""Multi-process training with PyTorch's own engine: ``torchrun`` starts the processes, ``torch.distributed``
connects them, ``DistributedDataParallel`` synchronises the gradients of what is trained (never the teacher).

Every rank holds the whole (small, in-memory) dataset and takes an interleaved share of each global batch, so
``--batch-size`` is the global batch and a run on N processes follows the same trajectory as on one, up to
floating-point reduction order (and batch-norm statistics, which stay per rank). Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL on CUDA, gloo on CPU.
    A plain ``fitnets`` command is a world of one and needs nothing."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if info.rank != 0:
        logging.getLogger("fitnets").setLevel(logging.WARNING)  # one copy of the logs, from rank 0
    return info


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def all_reduce_sum(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """Sum each tensor over ranks (in one call); the identity in a world of one."""
    if not current().enabled:
        return values
    flat = torch.stack([v.float().reshape(()) for v in values])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return list(flat.unbind())


def all_reduce_max(value: torch.Tensor) -> torch.Tensor:
    if not current().enabled:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value
