"""Your data in the engine: any map-style ``torch.utils.data.Dataset`` whose items are ``(input, label)`` or a
dict (``pixel_values`` / ``labels`` by default, as Hugging Face's image datasets and processors give them).

``DatasetSplit`` stands where an in-memory ``ImageData`` does. A ``DataLoader`` (worker processes, pinned memory
on CUDA, prefetching) reads the batches that ``fitnets.data.loader.batches`` lays out: the order depends only
on (seed, epoch), and every item is read under random states seeded from (seed, epoch, index) — torch's,
Python's ``random`` and NumPy's, in whichever process reads it — so the random transforms of your Dataset
draw the same numbers after a kill and ``--resume``, with any number of workers. The engine's own
augmentation (``data.augment``) is then applied to each item with a generator seeded the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fitnets.data.augment import to_float
from fitnets.data.checks import (
    HEAD_ITEMS,
    check_input,
    check_label,
    check_labels,
    class_index,
    exposed_labels,
    read_item,
)
from fitnets.data.split import Replaceable, add_views, hash_tensor, worker_message
from fitnets.errors import FitNetsError

log = logging.getLogger(__name__)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of item ``index``'s random draws in ``epoch`` of a run seeded ``seed`` (a 63-bit hash: no two
    nearby triples share a stream)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[torch.Generator]:
    """Seed torch's, Python's and NumPy's global random states with ``seed`` for the body (restoring them after,
    so that reading an item in the training process leaves its own draws alone); yields a generator seeded the
    same way for the engine's augmentation."""
    states = torch.random.get_rng_state(), random.getstate(), np.random.get_state()
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield torch.Generator().manual_seed(seed)
    finally:
        torch.random.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])


def as_image(value: Any, where: str) -> torch.Tensor:
    """An item's input as a ``(C, H, W)`` tensor: a tensor as it is (``(H, W)`` gains a channel), a PIL image
    or an ``(H, W, C)`` / ``(H, W)`` NumPy array as uint8 pixels."""
    if isinstance(value, torch.Tensor):
        x = value
    elif isinstance(value, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(value))
        if x.dim() == 3 and x.shape[-1] in (1, 3, 4) and x.shape[0] not in (1, 3, 4):
            x = x.permute(2, 0, 1)   # (H, W, C) → (C, H, W)
    elif hasattr(value, "convert") and hasattr(value, "size"):  # a PIL image
        x = torch.from_numpy(np.array(value, dtype=np.uint8, copy=True))
        x = x.permute(2, 0, 1) if x.dim() == 3 else x
    else:
        raise FitNetsError(f"{where} is a {type(value).__name__}; fitnets reads tensors, NumPy arrays and PIL "
                           "images (give the Dataset a transform that returns one)")
    return x.unsqueeze(0) if x.dim() == 2 else x


def unpack(item: Any, keys: tuple[str, str], where: str) -> tuple[Any, Any]:
    """``(input, label)`` of an item: a pair, or a mapping read at ``keys``."""
    if isinstance(item, Mapping):
        missing = [k for k in keys if k not in item]
        if missing:
            raise FitNetsError(f"{where} is a dict without {', '.join(map(repr, missing))} (its keys: "
                               f"{', '.join(map(repr, item))}); set data.input_key / data.label_key")
        return item[keys[0]], item[keys[1]]
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) >= 2:
        return item[0], item[1]
    raise FitNetsError(f"{where} is a {type(item).__name__}; items must be (input, label) or a dict with "
                       f"{keys[0]!r} and {keys[1]!r}")


class _Items(torch.utils.data.Dataset):
    """The user's dataset as the DataLoader reads it: each request is ``(index, seed)``; the item is read and
    augmented under that seed, and its input returned as a float ``(C, H, W)`` tensor with its label."""

    def __init__(self, split: DatasetSplit, aug):
        self.split, self.aug = split, aug

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, request: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = request
        split = self.split
        where = f"item {split.indices[index] if split.indices is not None else index} of {split.name}"
        with seeded(seed) as generator:
            x, y = unpack(read_item(split.dataset, split.source_index(index), where), split.keys, where)
            x = as_image(x, f"the input of {where}")
            if split.view is not None:
                x = split.view(x[None])[0]
            if self.aug:
                x = self.aug.apply(x[None], self.aug.draw(1, generator))[0]
        x = to_float(x)
        if split.normalize is not None:
            x = split.normalize(x)
        label = check_label(class_index(y, f"the label of {where}"), split.num_classes, f"the label of {where}",
                            split.classes_advice)
        return check_input(x, f"the input of {where}"), label


class DatasetSplit(Replaceable):
    """A split held as the user's ``Dataset``, read through a ``DataLoader``.

    Args:
        dataset: any map-style dataset (``len`` and ``[i]``).
        num_classes: the number of classes (``None``: counted from the labels, one pass over the items, or
            read from a ``targets`` / ``labels`` attribute when the dataset has one).
        keys: where a dict item holds its input and its label.
        workers: DataLoader worker processes (0: read in the training process).
        view: a fixed (not random) transform of every item, e.g. the evaluation ``CentreCrop``.
        normalize: ``(x - mean) / std`` after the pixels become floats (``Normalize``).
        classes_advice: how a user gives more classes, for the message about a label beyond ``num_classes``.
    """

    fixed = False  # the user's transforms may draw at random: an example's input may change from epoch to epoch
    in_memory = False
    reads_items = True  # augmented, viewed and normalised item by item, in the DataLoader's workers

    def __init__(self, dataset, num_classes: int | None = None, *, keys: tuple[str, str] = ("pixel_values", "labels"),
                 workers: int = 0, device: torch.device | str = "cpu", name: str = "the dataset",
                 indices: torch.Tensor | None = None, view=None, normalize=None,
                 classes_advice: str = "give num_classes="):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise FitNetsError(f"{name} is a {type(dataset).__name__}, not a map-style Dataset (len and [i]); an "
                               "IterableDataset cannot be shuffled per epoch reproducibly")
        self.dataset, self.keys, self.workers, self.name = dataset, (keys[0], keys[1]), workers, name
        self.indices, self.view, self.normalize = indices, view, normalize
        self._device = torch.device(device)
        if len(self) == 0:
            raise FitNetsError(f"{name} is empty")
        self.classes_advice = classes_advice  # how to raise the number of classes, for a label beyond it
        with seeded(0):  # the items' transforms draw: not from the training process's random states
            self.exposed = exposed_labels(dataset, self._item_label, self.keys[1])  # when the items agree
        self.num_classes = num_classes if num_classes is not None else self._count_classes()

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.dataset)

    def source_index(self, index: int) -> int:
        return int(self.indices[index]) if self.indices is not None else index

    def _item_label(self, i: int) -> Any:
        """The label item ``i`` of the Dataset gives, as it gives it."""
        where = f"item {i} of {self.name}"
        return unpack(read_item(self.dataset, i, where), self.keys, where)[1]

    def _count_classes(self) -> int:
        labels = self.exposed
        if labels is None:
            log.info("counting the classes of %s: one pass over its %s items, which expose no targets / labels "
                     "(give num_classes to skip it)", self.name, f"{len(self.dataset):,}")
            with seeded(0):  # the items' transforms draw: not from the training process's random states
                labels = [class_index(self._item_label(i), f"the label of item {i} of {self.name}")
                          for i in range(len(self.dataset))]
            labels = torch.tensor(labels)
        check_labels(labels, None, self.name)
        return int(labels.max()) + 1

    def check(self) -> None:
        """Before anything trains: every label the Dataset exposes (``targets`` / ``labels``), and the first
        ``HEAD_ITEMS`` items read as training reads them (each read item is checked again whenever it is read)."""
        if self.exposed is not None:
            check_labels(self.exposed, self.num_classes, self.name, self.classes_advice, self.indices)
        items = _Items(self, None)
        for i in range(min(HEAD_ITEMS, len(self))):
            items[i, item_seed(0, 0, self.source_index(i))]

    def subset(self, index: torch.Tensor) -> DatasetSplit:
        base = self.indices if self.indices is not None else torch.arange(len(self.dataset))
        return self.replace(indices=base[index.cpu()])

    def to(self, device: torch.device | str) -> DatasetSplit:
        return self.replace(_device=torch.device(device))

    def add_identity(self, h: Any) -> None:
        """Your Dataset's class, size and selection (its transforms cannot be hashed: the store's audit catches a
        changed one), and the view and normalisation."""
        dataset = self.dataset
        h.update(json.dumps([type(dataset).__module__, type(dataset).__qualname__, len(dataset),
                             list(self.keys)]).encode())
        if self.indices is not None:
            hash_tensor(h, self.indices)
        add_views(h, self)

    @property
    def device(self) -> torch.device:
        return self._device

    def read(self, shares: list[torch.Tensor], seed: int, epoch: int, aug
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches ``shares`` (indices into this split), read by the DataLoader's workers, each item under
        its (seed, epoch, index) seed; inputs as float tensors on the split's device."""
        cuda = self._device.type == "cuda"
        requests = [[(int(i), item_seed(seed, epoch, self.source_index(int(i)))) for i in share] for share in shares]
        loader = torch.utils.data.DataLoader(_Items(self, aug), batch_sampler=requests, num_workers=self.workers,
                                             pin_memory=cuda, collate_fn=_collate,
                                             # its own generator: the loader's base seed is not drawn from (and
                                             # does not move) the training process's global one
                                             generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        try:
            for x, y in loader:
                yield x.to(self._device, non_blocking=cuda), y.to(self._device, non_blocking=cuda)
        except FitNetsError as err:  # raised in a worker: the DataLoader re-raises it with the worker's traceback
            raise FitNetsError(worker_message(err)) from None


def _collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    shapes = {tuple(x.shape) for x, _ in items}
    if len(shapes) > 1:
        raise FitNetsError(f"the items of one batch differ in shape ({', '.join(map(str, sorted(shapes)[:3]))}); "
                           "resize them in the Dataset's transform, or set data.augment=random-resized-crop with "
                           "data.image_size=[H, W]")
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.long)


class Normalize:
    """``(x − mean) / std`` per channel, on float images ``(…, C, H, W)``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3] != len(self.mean):
            raise FitNetsError(f"data.mean/data.std have {len(self.mean)} values for images with {x.shape[-3]} "
                               "channels")
        return (x - self.mean.to(x.device)) / self.std.to(x.device)
