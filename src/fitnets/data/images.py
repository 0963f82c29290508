"""``ImageData``: a split held in memory as whole tensors — the form the built-in datasets take, so that a batch
is one index into it (no Dataset objects, no worker processes, nothing to wait for)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

import torch

from fitnets.data.split import add_views, hash_tensor


@dataclass
class ImageData:
    """Images ``(N, C, H, W)`` — uint8 pixels, or float32 after a preprocessing — and labels ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    fixed = True  # an example's input is the same in every epoch, before the engine's augmentation (a class fact)
    in_memory = True
    reads_items = False
    view: Callable | None = None        # a fixed transform of every batch (the evaluation crop)
    normalize: Callable | None = None   # (x − mean) / std once the pixels are floats

    def __post_init__(self):
        if self.images.dtype not in (torch.uint8, torch.float32) or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 or float32 (N, C, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> ImageData:
        index = index.to(self.device)
        return replace(self, images=self.images[index], labels=self.labels[index])

    def to(self, device: torch.device | str) -> ImageData:
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def with_view(self, view=None, normalize=None) -> ImageData:
        return replace(self, view=view, normalize=normalize)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def head(self, n: int) -> torch.Tensor:
        """The first ``n`` images."""
        return self.images[:n]

    def read(self, shares: list[torch.Tensor], seed: int = 0, epoch: int = 0, aug: Any = None
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Each batch: one index into the tensors (the engine augments it whole)."""
        for share in shares:
            share = share.to(self.device)
            yield self.images[share], self.labels[share]

    def quick(self) -> ImageData:
        return self

    def check(self) -> None:
        """Nothing to check: our own readers made these labels and images (``Split.check``)."""

    def add_identity(self, h: Any) -> None:
        """The images themselves (and the view and normalisation)."""
        hash_tensor(h, self.images)
        add_views(h, self)


def held_in_memory(split: Any) -> TypeGuard[ImageData]:
    """Whether ``split`` holds whole tensors (``images``, ``labels``) a batch indexes into: asked of the split
    (its ``in_memory``), never of its class."""
    return bool(split.in_memory)
