"""The teacher's output for a batch of training examples — the one place a training step gets it from.

A source (``fitnets.core.teacher.TeacherOutputs``) answers ``source(x, key)``, "what does the teacher give for
these examples": logits for KD, hint features for FitNets' stage 1. Three sources answer it the same way:

* ``LiveOutputs`` runs the frozen teacher (cut after the hint layer for hints) on the batch;
* ``CachedOutputs`` runs it once per training example, before the stage's first step, and then looks the
  outputs up by key. Valid only when the teacher sees the same input for an example in every epoch: no
  random augmentation (the teacher itself is deterministic: eval mode, no dropout);
* ``StoredOutputs`` (``fitnets.training.store``): logits per augmented view, kept on disk across runs.

``teacher_source(...)`` is the one place that picks a stage's source, and says in the log why the teacher runs
live; ``frozen_teacher(...)`` the one place a teacher module is wrapped for a run's speed options.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from fitnets.core.teacher import FrozenTeacher, TeacherOutputs
from fitnets.data.augment import RandomAugmentation
from fitnets.data.loader import batches
from fitnets.data.split import Split
from fitnets.training.schema import RunConfig
from fitnets.training.speed import DTYPES, Speed, lowered
from fitnets.training.store import StoredOutputs, audit_size

log = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], torch.Tensor]  # a frozen teacher's forward (to its logits or its hint)

__all__ = ["CachedOutputs", "Forward", "LiveOutputs", "StoredOutputs", "TeacherOutputs", "frozen_teacher",
           "teacher_source"]


def frozen_teacher(module: torch.nn.Module, speed: Speed, logits_key: str | int | None = None) -> FrozenTeacher:
    """``module`` wrapped as a run with the speed options ``speed`` wraps its teacher (its dtype, memory format,
    folded batch norm, compiled forward): the run, the ``--fast`` tuner, ``fitnets bench``, ``fitnets evaluate``
    and ``fitnets suggest --probe`` all build it here."""
    return FrozenTeacher(module, dtype=lowered(speed.teacher_dtype), channels_last=speed.teacher_channels_last,
                         compile=speed.compiles_teacher, fold_bn=speed.teacher_fold_bn, logits_key=logits_key)


class LiveOutputs(TeacherOutputs):
    """The teacher runs on every batch."""

    def __init__(self, forward: Forward):
        self.forward = forward

    def __call__(self, x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def cache_blocker(aug: RandomAugmentation, train=None) -> str | None:
    """Why a cache of teacher outputs cannot be valid for this data pipeline, or ``None`` when it can."""
    if train is not None and not train.fixed:
        return ("your Dataset's transforms may draw at random, so an example's input may change from epoch to "
                "epoch and the teacher's outputs cannot be cached; the teacher runs live")
    if aug:
        return (f"random augmentation ({aug}) changes the teacher's input every epoch, so its outputs cannot be "
                "cached; the teacher runs live")
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
    """Teacher outputs computed once per training example and looked up by the examples' keys (without
    augmentation, their indices).

    Args:
        forward: the frozen teacher's forward (to its logits, or to its hint layer).
        data: the training examples, indexed as the batches index them.
        batch_size: batch size of the one pass that fills the cache.
        desc: what is cached, for the progress bar and the log (``"teacher logits"``).
        dtype: storage dtype (e.g. bfloat16: half the memory); lookups return float32.
        spill_dir, spill_bytes: a CPU cache larger than ``spill_bytes`` is memory-mapped from a file in
            ``spill_dir`` (e.g. the run folder) instead of held in RAM.
    """

    def __init__(self, forward: Forward, data: Split, batch_size: int = 1000, desc: str = "teacher cache",
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
        for x, _, key in tqdm(batches(data, size), total=-(-len(data) // size), desc=self.desc, leave=False,
                                disable=not self.progress):
            out = self.forward(x)
            if self.values is None:
                self.values = _allocate((len(data), *out.shape[1:]), self.dtype or out.dtype, out.device,
                                        self.spill_dir, self.spill_bytes, self.desc)
            self.values[key] = out.to(self.values.dtype)
        if self.values is None:  # no examples
            return
        log.info("%s: %d examples, %s, %.1f MB", self.desc, len(data), tuple(self.values.shape[1:]),
                 self.values.numel() * self.values.element_size() / 2**20)

    def __call__(self, x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        if self.values is None:
            raise RuntimeError(f"{self.desc}: prepare() was not called before the first lookup")
        return self.values[key].float()


def store_layout(config: RunConfig, train) -> tuple[dict[str, int] | None, str]:
    """Whether a run of ``config`` on the training split ``train`` reads its teacher's logits from the store, by
    the one rule a run and ``fitnets store build`` share: the store's layout (``{}``: a slot per enumerable view;
    ``{"epochs", "seed"}``: a slot per drawn view of each epoch), or ``None`` and why not."""
    aug = config.data.augmentation()
    if train.fixed and not aug and not config.store.unaugmented:
        return None, ("this run has no random augmentation (data.pad, data.flip): it computes the teacher's logits "
                      "once per example at its start, no store is needed")
    if not config.store.enabled:
        return None, "store.enabled is false in this config: the run would not read a store"
    if train.fixed and aug.views:
        if train.in_memory:  # their content keys the store
            return {}, ""
        return None, ("a streamed folder is not held in memory, so it cannot be keyed by its content; the teacher "
                      "runs live")
    if config.store.per_epoch:
        return {"epochs": config.epochs, "seed": config.seed}, ""
    drawn = "your Dataset's views" if not train.fixed else f"the views of {aug}"
    return None, (f"{drawn} are drawn, not enumerable; with store.per_epoch=true the store keeps them per (seed, "
                  "epoch, example) for the runs of this seed; the teacher runs live")


def teacher_source(forward: Forward, kind: str, train: Split, config: RunConfig, teacher: FrozenTeacher,
                   spill_dir: str | Path | None = None, progress: bool = True) -> TeacherOutputs:
    """Where a stage's teacher outputs come from (``kind``: ``"logits"`` or ``"hints"``), decided here only:

    * logits under random pad-flip augmentation: the teacher-output store when ``store.enabled`` and the
      training data are in memory (their content keys the store, each view a slot);
    * logits of drawn views (your Dataset's transforms, random-resized-crop), with ``store.per_epoch`` too: the
      store keyed by (seed, epoch, example);
    * logits without augmentation, with ``store.unaugmented`` (``fitnets frontier``): the store, one slot per
      example, so that runs with the same teacher and data (a family of students) share one teacher pass;
    * hints are never stored; without augmentation, on data whose examples do not change (not your Dataset's
      transforms), with ``teacher_cache``: computed once per example (``CachedOutputs``);
    * else live.
    """
    c, desc = config, f"teacher {kind}"
    aug = c.data.augmentation()
    if kind == "logits" and (aug or not train.fixed or c.store.unaugmented) and c.store.enabled:
        layout, why = store_layout(c, train)
        if layout is not None:
            return StoredOutputs(teacher, train, aug, train.num_classes, DTYPES[c.cache_dtype],
                                 Path(c.store.dir) if c.store.dir else None, c.store.max_gb,
                                 {"teacher": c.teacher, "data": c.data.name, "preprocess": c.data.preprocess},
                                 audit=audit_size(c.store.audit_share), **layout)
        log.info("no teacher-output store: %s", why)
    blocker = cache_blocker(aug, train)
    if c.teacher_cache and blocker is None:
        return CachedOutputs(forward, train, c.data.eval_batch_size, desc, progress, DTYPES[c.cache_dtype],
                             spill_dir)
    if c.teacher_cache:
        log.info("no %s cache: %s", desc, blocker)
    return LiveOutputs(forward)
