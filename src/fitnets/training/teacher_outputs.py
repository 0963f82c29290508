"""The teacher's output for a batch of training examples — the one place a training step gets it from.

``outputs(x, key)`` answers "what does the teacher give for these examples": logits for KD, hint features
for FitNets' stage 1. Two sources answer it the same way:

* ``LiveOutputs`` runs the frozen teacher (cut after the hint layer for hints) on the batch;
* ``CachedOutputs`` runs it once per training example, before the stage's first step, and then looks the
  outputs up by index. Valid only when the teacher sees the same input for an example in every epoch: no
  random augmentation (the teacher itself is deterministic: eval mode, no dropout).

Under augmentation, teacher logits come from the store (``fitnets.training.store``), keyed by the view.

``teacher_outputs(...)`` picks the source for a run and says in the log why the teacher runs live.
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

Forward = Callable[[torch.Tensor], torch.Tensor]  # a frozen teacher's forward (to its logits or its hint)


class TeacherOutputs:
    """The interface: ``prepare()`` once before a stage trains, then ``outputs(x, index)`` for each batch."""

    def prepare(self) -> None:
        """Do any work that must precede the first step (building a cache); cheap when already done."""

    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self) -> dict[str, float]:
        """Figures about the epoch just trained, for its metrics row (the store's hit rate); called once per
        epoch on every rank."""
        return {}


class LiveOutputs(TeacherOutputs):
    """The teacher runs on every batch."""

    def __init__(self, forward: Forward):
        self.forward = forward

    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def cache_blocker(pad: int, flip: bool) -> str | None:
    """Why a cache of teacher outputs cannot be valid for this data pipeline, or ``None`` when it can."""
    if pad or flip:
        return (f"random augmentation (pad={pad}, flip={flip}) changes the teacher's input every epoch, so its "
                "outputs cannot be cached; the teacher runs live")
    return None


def _allocate(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, spill_dir, spill_bytes: int,
              desc: str) -> torch.Tensor:
    numel = math.prod(shape)
    size = numel * dtype.itemsize
    if spill_dir is None or device.type != "cpu" or size <= spill_bytes:
        return torch.empty(shape, dtype=dtype, device=device)
    path = Path(spill_dir) / f"{desc.replace(' ', '_')}.cache"
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("%s: %.1f GB, memory-mapped from %s", desc, size / 2**30, path)
    return torch.from_file(str(path), shared=True, size=numel, dtype=dtype).view(shape)


class CachedOutputs(TeacherOutputs):
    """Teacher outputs computed once per training example and looked up by the examples' indices.

    Args:
        forward: the frozen teacher's forward (to its logits, or to its hint layer).
        data: the training examples, indexed as the batches index them.
        batch_size: batch size of the one pass that fills the cache.
        desc: what is cached, for the progress bar and the log (``"teacher logits"``).
        dtype: storage dtype (e.g. bfloat16: half the memory); lookups return float32.
        spill_dir, spill_bytes: a CPU cache larger than ``spill_bytes`` is memory-mapped from a file in
            ``spill_dir`` (e.g. the run folder) instead of held in RAM.
    """

    def __init__(self, forward: Forward, data: ImageData, batch_size: int = 1000, desc: str = "teacher cache",
                 progress: bool = True, dtype: torch.dtype | None = None, spill_dir: str | Path | None = None,
                 spill_bytes: int = 2 << 30):
        self.forward, self.data, self.batch_size, self.desc = forward, data, batch_size, desc
        self.progress, self.dtype, self.spill_dir, self.spill_bytes = progress, dtype, spill_dir, spill_bytes
        self.values: torch.Tensor | None = None

    @torch.no_grad()
    def prepare(self) -> None:
        if self.values is not None:
            return
        data, size = self.data, self.batch_size
        for x, _, index in tqdm(batches(data, size), total=-(-len(data) // size), desc=self.desc, leave=False,
                                disable=not self.progress):
            out = self.forward(x)
            if self.values is None:
                self.values = _allocate((len(data), *out.shape[1:]), self.dtype or out.dtype, out.device,
                                        self.spill_dir, self.spill_bytes, self.desc)
            self.values[index] = out.to(self.values.dtype)
        log.info("%s: %d examples, %s, %.1f MB", self.desc, len(data), tuple(self.values.shape[1:]),
                 self.values.numel() * self.values.element_size() / 2**20)

    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.values is None:
            raise RuntimeError(f"{self.desc}: prepare() was not called before the first lookup")
        return self.values[index].float()


def teacher_outputs(forward: Forward, desc: str, data: ImageData, *, cache: bool, pad: int = 0, flip: bool = False,
                    batch_size: int = 1000, dtype: torch.dtype | None = None, spill_dir: str | Path | None = None,
                    progress: bool = True) -> TeacherOutputs:
    """The source of a run's teacher outputs: cached when ``cache`` is asked for and valid, else live."""
    blocker = cache_blocker(pad, flip)
    if cache and blocker is None:
        return CachedOutputs(forward, data, batch_size, desc, progress, dtype, spill_dir)
    if cache:
        log.info("no %s cache: %s", desc, blocker)
    return LiveOutputs(forward)
