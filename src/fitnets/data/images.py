"""``ImageData``: a split held in memory as whole tensors — the form the built-in datasets take, so that a batch
is one index into it (no Dataset objects, no worker processes, nothing to wait for)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch


@dataclass
class ImageData:
    """Images ``(N, C, H, W)`` — uint8 pixels, or float32 after a preprocessing — and labels ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    fixed = True  # an example's input is the same in every epoch, before the engine's augmentation (a class fact)
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

    def subset(self, index: torch.Tensor) -> "ImageData":
        return replace(self, images=self.images[index], labels=self.labels[index])

    def to(self, device: torch.device | str) -> "ImageData":
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def with_view(self, view=None, normalize=None) -> "ImageData":
        return replace(self, view=view, normalize=normalize)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def head(self, n: int) -> torch.Tensor:
        """The first ``n`` images."""
        return self.images[:n]
