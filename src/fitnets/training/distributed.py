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
from datetime import timedelta

import torch
import torch.distributed as dist

from fitnets.errors import FitNetsError

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


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FitNetsError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise FitNetsError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def setup(device_name: str = "auto") -> torch.device:
    """The device of this process, after joining the process group when started by ``torchrun``
    (``WORLD_SIZE`` > 1: NCCL on CUDA, gloo on CPU; one GPU per process). A plain ``fitnets`` command is a world
    of one and needs nothing. The rank is then ``current()``'s: the one source every part of a run asks."""
    device = resolve_device(device_name)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s()))
    world = current()
    if not world.is_main:
        logging.getLogger("fitnets").setLevel(logging.WARNING)  # one copy of the logs, from rank 0
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


TIMEOUT_ENV = "FITNETS_DIST_TIMEOUT"


def timeout_s() -> float:
    """How long a rank waits for the others at a collective before the run stops (``$FITNETS_DIST_TIMEOUT``,
    seconds; 600 by default): a rank that stalls without dying must not block the rest forever."""
    try:
        return float(os.environ.get(TIMEOUT_ENV, "600"))
    except ValueError:
        raise FitNetsError(f"${TIMEOUT_ENV} must be a number of seconds, got {os.environ[TIMEOUT_ENV]!r}") from None


def _store():
    """The process group's key-value store (torch keeps it private; ``None`` if this torch does not expose it)."""
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:
        return None


def report_progress(where: str) -> None:
    """Tell the other ranks where this one is (a key in the group's store), so that a stall can be located."""
    if current().enabled and (store := _store()) is not None:
        store.set(f"fitnets/progress/{current().rank}", where)


# What a collective's timeout says: "Timed out waiting 5000ms for recv…" (gloo, NCCL's watchdog: "timed out"),
# and, on a pair gloo closed after a timeout (a rank stopped by SIGSTOP mid-collective), "Application timeout
# caused pair closure".
_TIMEOUT_TEXTS = ("timed out", "timeout")


def stall_error(err: BaseException, where: str) -> FitNetsError | None:
    """A one-line error for a collective that timed out — which ranks are behind, from their last reported
    progress — or ``None`` when ``err`` is not such a timeout."""
    if not current().enabled or not any(text in str(err).lower() for text in _TIMEOUT_TEXTS):
        return None
    world, store, seen = current(), _store(), {}
    if store is not None:
        store.set_timeout(timedelta(seconds=2))
        for rank in range(world.world_size):
            try:
                seen[rank] = store.get(f"fitnets/progress/{rank}").decode()
            except Exception:
                seen[rank] = "nothing yet"
    mine = seen.get(world.rank)
    behind = [f"rank {r} ({p})" for r, p in seen.items() if p != mine]
    if behind:
        who = f"stopped or stalled: {', '.join(behind)}"
    elif seen:  # progress is reported per epoch: the stalled rank stopped inside the epoch every rank reached
        who = f"every rank reached {mine}, and one of them stopped or stalled inside it"
    else:
        who = "stopped or stalled: unknown (no progress reports)"
    return FitNetsError(f"rank {world.rank}: a collective timed out after {timeout_s():.0f} s (${TIMEOUT_ENV}) at "
                        f"{where}; {who}")


def current() -> DistInfo:
    """This process's rank and the world's size (a world of one outside ``torchrun``)."""
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


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (any picklable object: ``--fast``'s choice, measured by rank 0 alone, so
    that every rank trains with the same options); ``obj`` itself in a world of one."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
