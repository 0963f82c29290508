"""What the engine asks of a data split, whichever form it takes — ``ImageData`` (whole tensors in memory),
``FolderStream`` (an image folder decoded batch by batch) or ``DatasetSplit`` (your ``Dataset``): the ``Split``
protocol. Code that reads a split asks it, never which class it is."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Split(Protocol):
    """A split of examples and their labels.

    Attributes:
        num_classes: the number of classes.
        fixed: an example's input is the same in every epoch before the engine's augmentation (not so for your
            Dataset, whose transforms may draw at random).
        in_memory: the images are one tensor a batch indexes into (``images``, ``labels``): their content can key
            a store, and a preprocessing can be fitted on them.
        reads_items: ``read`` gives batches already augmented, viewed and normalised item by item (your Dataset,
            in the DataLoader's workers), keyed by (epoch, example); else ``batches`` does that to whole batches.
        view, normalize: the fixed view every batch gets (the evaluation crop), and ``(x − mean) / std``.
    """

    num_classes: int
    fixed: bool
    in_memory: bool
    reads_items: bool
    view: Callable | None
    normalize: Callable | None

    def __len__(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def subset(self, index: torch.Tensor) -> Split: ...

    def to(self, device: torch.device | str) -> Split: ...

    def with_view(self, view: Callable | None = None, normalize: Callable | None = None) -> Split: ...

    def read(self, shares: list[torch.Tensor], seed: int, epoch: int, aug: Any
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Each batch of ``shares`` (indices into the split) as ``(inputs, labels)`` on the split's device."""
        ...

    def quick(self) -> Split:
        """The split as read for a look at a few examples: no worker processes to start."""
        ...

    def add_identity(self, h: Any) -> None:
        """Feed what the examples are into the hash ``h`` (the teacher-output store's key)."""
        ...

    def check(self) -> None:
        """Before anything trains, what can be checked cheaply of the labels and the first items; one line
        (``FitNetsError``) for the first thing wrong."""
        ...


def worker_message(err: Exception) -> str:
    """A ``FitNetsError`` raised in a DataLoader worker, re-raised by the loader with the worker's traceback: its
    own one line again."""
    return str(err).rstrip().splitlines()[-1].removeprefix("fitnets.errors.FitNetsError: ")


def hash_tensor(h: Any, t: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape and bytes into the hash ``h``."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    h.update(str((t.dtype, tuple(t.shape))).encode())
    h.update(t.numpy().tobytes() if t.numel() else b"")


def add_views(h: Any, split: Any) -> None:
    """A split's view and normalisation, into its identity hash."""
    for part in (split.view, split.normalize):
        h.update(repr(vars(part) if part is not None else None).encode())


class Replaceable:
    """A split read through a ``DataLoader`` is immutable: its ``subset``, ``to`` and ``with_view`` are copies
    with some attributes replaced (the data itself is shared)."""

    workers: int

    def replace(self, **changes: Any) -> Any:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__, **changes)
        return new

    def with_view(self, view: Callable | None = None, normalize: Callable | None = None) -> Any:
        return self.replace(view=view, normalize=normalize)

    def quick(self) -> Any:
        return self.replace(workers=0)
