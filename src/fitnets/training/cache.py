"""A teacher-output cache: the frozen teacher's logits (or hint features) for each training example, computed
once and reused every epoch.

Valid only when the teacher sees the same input for an example in every epoch: no random augmentation (the
teacher itself is deterministic: eval mode, no dropout). When a run augments its batches the cache is not
built, and the run says why.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from fitnets.data.loader import ImageData, batches

log = logging.getLogger(__name__)


def cache_blocker(pad: int, flip: bool) -> str | None:
    """Why a cache of teacher outputs cannot be valid for this data pipeline, or ``None`` when it can."""
    if pad or flip:
        return (f"random augmentation (pad={pad}, flip={flip}) changes the teacher's input every epoch, so its "
                "outputs cannot be cached; the teacher runs live")
    return None


def _allocate(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, spill_dir, spill_bytes: int,
              desc: str) -> torch.Tensor:
    numel = math.prod(shape)
    size = numel * torch.empty((), dtype=dtype).element_size()
    if spill_dir is None or device.type != "cpu" or size <= spill_bytes:
        return torch.empty(shape, dtype=dtype, device=device)
    path = Path(spill_dir) / f"{desc.replace(' ', '_')}.cache"
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("%s: %.1f GB, memory-mapped from %s", desc, size / 2**30, path)
    return torch.from_file(str(path), shared=True, size=numel, dtype=dtype).view(shape)


class TeacherCache:
    """Teacher outputs indexed by training example: ``cache(x, index)`` returns them for a batch."""

    def __init__(self, values: torch.Tensor):
        self.values = values

    @classmethod
    @torch.no_grad()
    def build(cls, fn: Callable[[torch.Tensor], torch.Tensor], data: ImageData, batch_size: int = 1000,
              desc: str = "teacher cache", progress: bool = True, dtype: torch.dtype | None = None,
              spill_dir: str | Path | None = None, spill_bytes: int = 2 << 30) -> "TeacherCache":
        """Run ``fn`` (a frozen teacher's forward, or its forward to the hint) over all of ``data`` once,
        storing the outputs in ``dtype`` (e.g. bfloat16: half the memory; lookups return float32).

        A CPU cache larger than ``spill_bytes`` is memory-mapped from a file in ``spill_dir`` (e.g. the run
        folder) instead of held in RAM; the operating system pages it in as batches look it up."""
        values = None
        for x, _, index in tqdm(batches(data, batch_size), total=-(-len(data) // batch_size), desc=desc,
                                leave=False, disable=not progress):
            out = fn(x)
            if values is None:
                values = _allocate((len(data), *out.shape[1:]), dtype or out.dtype, out.device, spill_dir,
                                   spill_bytes, desc)
            values[index] = out.to(values.dtype)
        log.info("%s: %d examples, %s, %.1f MB", desc, len(data), tuple(values.shape[1:]),
                 values.numel() * values.element_size() / 2**20)
        return cls(values)

    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.values[index].float()
