"""The teacher-output store: the teacher's logits for every augmented view of every training example, on disk,
filled as runs go and shared by every later run with the same teacher and data.

The engine's augmentation has a finite set of views per example (``Augmentation.views``: 162 for pad 4 with
flips), and every batch says which view of which example each image is (its key, ``example × views + view``).
A store holds one slot of logits per key. A run reads the slots already filled and runs the teacher only on
the images whose slot is empty, writing what it computed; so the first run costs what a live run costs, a
second one with the same teacher and data (another seed, another method with a KD stage) is mostly
teacher-free, and ``fitnets store build`` fills every slot ahead of time.

A store is named by a key over everything its outputs depend on: the teacher's weights and dtype, the training
images (after preprocessing, in order), the augmentation and the stored dtype; anything else gets a store of
its own. It lives in ``$FITNETS_CACHE/stores/<key>`` (default ``~/.cache/fitnets``): ``meta.json``,
``values.bin`` (``slots × classes`` logits, fp32 or bf16, memory-mapped) and ``check.bin`` (one int64 per slot:
0 while the slot is empty, else a checksum of its values and position).

Safety: a slot's values are written before its checksum, so a write interrupted at any point (kill -9) leaves
the slot reading as empty; every read recomputes the checksums of the slots it reads, and a slot that does
not match (a torn write, a damaged file) is treated as empty, computed live and written again — never used.
A store whose files do not match its ``meta.json`` (or whose ``meta.json`` is not a JSON object) is deleted and
rebuilt; one that cannot be written (a read-only cache folder) is not used: the run says so and goes on with the
teacher live. ``fitnets store list`` counts as filled only the slots whose checksum matches. The files are
allocated in full when the store is created (so a full disk shows up then, as one message, not as a crash
mid-run), and a store larger than ``store.max_gb`` is not created: the run says so and goes on with the teacher
live.

Processes on one machine (the ranks of a ``torchrun`` job, runs started side by side) share a store through the
page cache: each fills and reads the slots of its own share of each batch. Under a multi-node job each node
keeps its own store (the folder name carries the node's rank), so a cache folder on a shared file system is
never written by two machines.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from fitnets.core.teacher import FrozenTeacher, TeacherOutputs
from fitnets.data.augment import to_float
from fitnets.data.split import hash_tensor
from fitnets.errors import FitNetsError
from fitnets.training import distributed
from fitnets.training.cache import CACHE_ENV, StoreInfo, cache_root, clear_stores, list_stores, stores_dir
from fitnets.training.speed import DTYPES, dtype_name
from fitnets.training.store_slots import NotWritable, SlotFile, create_slots, human_size, read_meta, slots_size

__all__ = ["CACHE_ENV", "SlotFile", "StoreInfo", "StoreRefused", "StoredOutputs", "cache_root", "clear_stores", "fill",
           "human_size", "list_stores", "open_slots", "store_key", "stores_dir"]

log = logging.getLogger(__name__)

FORMAT = 1
DRAWN_NOT_AHEAD = ("this run's store keeps views drawn per (seed, epoch, example) — your Dataset's transforms or "
                   "random-resized-crop —: the runs that draw them fill it, not ahead of time")


class StoreRefused(FitNetsError):
    """A store cannot be used for this run (too large, no disk space, data it cannot key); the teacher runs live."""


# ---------------------------------------------------------------- the key

def store_key(teacher: torch.nn.Module, teacher_dtype: torch.dtype | None, data, aug, dtype: torch.dtype,
              drawn: dict[str, int] | None = None) -> str:
    """The name of the store for these outputs: a hash of the teacher's weights (and buffers) and dtype, the
    training examples (their ``add_identity``), the augmentation, the stored dtype — and, for drawn views, the seed and
    epochs they were drawn for."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"format": FORMAT, "teacher_dtype": str(teacher_dtype), "aug": str(aug), "dtype": str(dtype),
                         "teacher_class": type(teacher).__name__, "drawn": drawn}).encode())
    for name, t in teacher.state_dict().items():
        h.update(name.encode())
        hash_tensor(h, t)
    data.add_identity(h)
    return h.hexdigest()


def _node_suffix() -> str:
    """``-node<N>`` under a multi-node torchrun job (one store per machine), else nothing."""
    world, local = os.environ.get("WORLD_SIZE"), os.environ.get("LOCAL_WORLD_SIZE")
    if world and local and world != local:
        return f"-node{os.environ.get('GROUP_RANK', '0')}"
    return ""


def open_slots(root: Path | None, key: str, meta: dict[str, Any], max_gb: float) -> tuple[SlotFile, bool]:
    """The store named ``key`` under ``root`` (``cache_root()`` when None), created when missing or damaged.
    Returns it and whether it was created now.

    Raises:
        StoreRefused: it would be larger than ``max_gb``, the disk cannot hold it, or it cannot be written.
    """
    path = stores_dir(root) / (key[:24] + _node_suffix())
    meta = {"format": FORMAT, "key": key, **meta}
    size = slots_size(meta["slots"], meta["width"], DTYPES[meta["dtype"]])
    if (path / "meta.json").exists():
        try:
            saved = read_meta(path / "meta.json")
            if any(saved.get(k) != meta[k] for k in ("format", "key", "slots", "width", "dtype")):
                raise ValueError("its meta.json describes other outputs")
            return _writable(path, saved), False
        except (ValueError, KeyError, TypeError, OSError) as err:
            log.warning("teacher-output store %s is damaged (%s): deleting it and building a new one", path, err)
            shutil.rmtree(path, ignore_errors=True)
    if size > max_gb * 2**30:
        raise StoreRefused(f"the teacher-output store for this run would take {human_size(size)}, above "
                           f"store.max_gb = {max_gb:g}; raise it (--set store.max_gb={math.ceil(size / 2**30)}) to "
                           "use one")
    try:
        create_slots(path, {**meta, "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    except OSError as err:
        fix = "free space there" if err.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
        raise StoreRefused(f"cannot create the teacher-output store ({human_size(size)}) in {path.parent}: "
                           f"{err.strerror or err}; {fix} or point ${CACHE_ENV} elsewhere") from None
    log.info("created teacher-output store %s: %s slots (%s examples × %s views) × %d logits, %s", path,
             f"{meta['slots']:,}", f"{meta['examples']:,}", meta["views"], meta["width"], human_size(size))
    return _writable(path, json.loads((path / "meta.json").read_text())), True


def _writable(path: Path, meta: dict[str, Any]) -> SlotFile:
    try:
        return SlotFile(path, meta)
    except NotWritable as err:
        raise StoreRefused(f"the teacher-output store {path} is read-only ({err}): make it writable, or point "
                           f"${CACHE_ENV} to a folder you can write") from None


# ---------------------------------------------------------------- the source a training step reads

AUDIT_SHARE = 0.1   # store.audit_share's default: a change to 10% of the examples is noticed
AUDIT_MISS = 0.01   # ... in its first epoch with probability ≥ 99%


def audit_size(share: float, miss: float = AUDIT_MISS) -> int:
    """Stored slots to recompute each epoch so that a change to ``share`` of the examples (a transform changed
    under the same class name, for some items) goes unseen with probability at most ``miss``: each slot drawn
    at random misses it with probability ``1 − share``, ``k`` of them with ``(1 − share)^k ≤ miss`` — 44 slots
    for 10%, 459 for 1%."""
    return math.ceil(math.log(miss) / math.log1p(-share))


class StoredOutputs(TeacherOutputs):
    """Teacher logits from the store where a slot is filled, live (and then stored) where it is not.

    Two layouts. Pad-flip views are enumerable: one slot per (example, view), shared by every seed. Drawn views
    (your Dataset's transforms, random-resized-crop) are not: with ``epochs`` given, one slot per (epoch,
    example) of a run seeded ``seed`` — the draw is seeded by (seed, epoch, index), so the key names the view —
    shared by the runs of that seed (a method comparison, a sweep).

    Never stale: each epoch, ``audit`` stored slots (``audit_size``), picked at random from the first batches'
    hits, are recomputed by the teacher before they are used; a mismatch (the data changed under the same name —
    a transform's parameter, say) deletes the store with one warning and the teacher runs live from then on.

    Args:
        teacher: the frozen teacher: its forward gives the logits, its module and dtype name the store.
        data: the training examples, indexed as the batches index them.
        aug: the run's augmentation (pad-flip: its views are the store's slots per example).
        width: logits per example (the number of classes).
        dtype: stored dtype; lookups return float32.
        root: the cache folder (``cache_root()`` when None); ``max_gb``: the largest store created.
        epochs, seed: drawn views: the epochs to keep slots for and the run's seed.
        audit: stored slots recomputed each epoch (``audit_size``).
    """

    def __init__(self, teacher: FrozenTeacher, data, aug, width: int,
                 dtype: torch.dtype = torch.float32, root: Path | None = None, max_gb: float = 8.0,
                 about: dict[str, Any] | None = None, *, epochs: int | None = None, seed: int = 0,
                 audit: int | None = None):
        self.forward = teacher
        self.data, self.aug, self.width, self.dtype = data, aug, width, dtype
        self.root, self.max_gb, self.about = root, max_gb, about or {}
        self.drawn = {"seed": seed, "epochs": epochs} if epochs is not None else None
        self.views = epochs if epochs is not None else aug.views
        self.slots: SlotFile | None = None
        self.live = False   # the store was refused or dropped: the teacher runs live
        self.hits = self.lookups = 0
        self.audit = audit if audit is not None else audit_size(AUDIT_SHARE)
        self.audits = 0     # slots recomputed this epoch
        self._pick = torch.Generator().manual_seed(seed)

    def size_bytes(self) -> int:
        return slots_size(len(self.data) * self.views, self.width, self.dtype)

    def prepare(self) -> None:
        if self.slots is not None or self.live:
            return
        key = store_key(self.forward.module, self.forward.dtype, self.data, self.aug, self.dtype, self.drawn)
        meta = {"slots": len(self.data) * self.views, "examples": len(self.data), "views": self.views,
                "width": self.width, "dtype": dtype_name(self.dtype),
                "augmentation": str(self.aug), **({"drawn": self.drawn} if self.drawn else {}), **self.about}
        try:
            self.slots, created = open_slots(self.root, key, meta, self.max_gb)
        except StoreRefused as err:
            log.warning("%s; the teacher runs live", err)
            self.live = True
            return
        if not created:
            filled = self.slots.filled()
            log.info("teacher logits from the store %s: %.1f%% of its %s slots filled", self.slots.path,
                     100 * filled / self.slots.slots, f"{self.slots.slots:,}")

    def _matches(self, x: torch.Tensor, stored: torch.Tensor) -> bool:
        """Whether the teacher, run now on ``x`` (one image), gives the ``stored`` logits (up to the float
        rounding of another batch size and of the stored dtype)."""
        fresh = self.forward(x).to("cpu", self.dtype).float()
        loose = self.dtype != torch.float32 or self.forward.dtype is not None
        tol = 5e-2 if loose else 1e-3
        return bool(torch.allclose(fresh, stored.float(), rtol=tol, atol=tol))

    def _drop(self) -> None:
        assert self.slots is not None  # only a store in use is dropped
        log.warning("the teacher-output store %s does not match this run's data: a stored slot differs from what "
                    "the teacher gives now (did a transform change under the same name?); the store is deleted "
                    "and the teacher runs live", self.slots.path)
        shutil.rmtree(self.slots.path, ignore_errors=True)
        self.slots, self.live = None, True

    def __call__(self, x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        if self.live:
            return self.forward(x)
        if self.slots is None:
            raise RuntimeError("teacher-output store: prepare() was not called before the first lookup")
        slots = key.cpu()
        inside = slots < self.slots.slots   # an extended run's later epochs have no slots: live
        values, hit = self.slots.read(slots.clamp(max=self.slots.slots - 1))
        hit &= inside
        if self.audits < self.audit and bool(hit.any()):
            hits = hit.nonzero()[:, 0]
            take = hits[torch.randperm(len(hits), generator=self._pick)[:self.audit - self.audits]]
            self.audits += len(take)
            if not self._matches(x[take.to(x.device)], values[take]):
                self._drop()
                return self.forward(x)
        out = values.float()
        self.lookups += len(slots)
        self.hits += int(hit.sum())
        if not bool(hit.all()):
            miss = ~hit
            live = self.forward(x[miss.to(x.device)]).to("cpu", self.dtype)
            write = inside[miss]
            self.slots.write(slots[miss][write], live[write])
            # The step gets the stored value (rounded to the stored dtype) whether the slot was filled or not,
            # so a slot gives every run, and a resumed one, the value first written to it.
            out[miss] = live.float()
        return out.to(x.device, non_blocking=True)

    def metrics(self) -> dict[str, float]:
        """The share of this epoch's lookups the store answered (over every rank), then the counters restart."""
        device = self.data.device
        hits, lookups = distributed.all_reduce_sum([torch.tensor(float(self.hits), device=device),
                                                    torch.tensor(float(self.lookups), device=device)])
        self.hits = self.lookups = self.audits = 0
        return {"store_hit_rate": float(hits) / float(lookups)} if float(lookups) else {}


# ---------------------------------------------------------------- filling a store ahead of time

@torch.no_grad()
def fill(outputs: StoredOutputs, batch_size: int = 1000, progress: bool = True) -> tuple[int, int]:
    """Fill every empty slot of ``outputs``' store with the teacher's logits for that view (``fitnets store
    build``). Under torchrun each rank fills the views ``v`` with ``v % world_size == rank``. Resumable: what was
    written stays written. Returns (slots this process filled, slots in the store)."""
    from tqdm import tqdm

    if outputs.drawn:
        raise StoreRefused(DRAWN_NOT_AHEAD)
    outputs.prepare()
    if outputs.live:
        raise StoreRefused("no teacher-output store for this run (the warning above says why)")
    store, aug, data = outputs.slots, outputs.aug, outputs.data
    assert store is not None  # prepared and not live
    world = distributed.current()
    empty = store.empty_slots()
    views = empty % aug.views
    todo = {v: empty[views == v] // aug.views for v in range(world.rank, aug.views, world.world_size)}
    done = 0
    with tqdm(total=sum(len(e) for e in todo.values()), desc="store build", unit="img",
              disable=not progress or not world.is_main, mininterval=0.5) as bar:
        for view, examples in todo.items():
            for start in range(0, len(examples), batch_size):
                index = examples[start:start + batch_size]
                images = aug.apply(data.images[index.to(data.device)], torch.full((len(index),), view))
                store.write(index * aug.views + view, outputs.forward(to_float(images)))
                done += len(index)
                bar.update(len(index))
    return done, store.slots
