"""The engine's random augmentations, applied to whole batches on the device (in memory) or to one item at a time
(a user's ``Dataset``, in the DataLoader's workers) — the same code both ways.

Each augmentation ``draw``s its random parameters for ``n`` images from a ``torch.Generator`` (the epoch's, or
the item's: ``fitnets.data.datasets.item_seed``), then ``apply``s them; so what an image looks like depends only
on (seed, epoch, index), which is what makes a resumed run bit-identical.

* ``Augmentation`` (``data.augment: pad-flip``): zero-pad and crop back at a random offset, flip. Finitely many
  views per image, so the teacher-output store can keep one slot per view.
* ``ResizedCrop`` (``random-resized-crop``): the ImageNet recipe — a crop of random area and aspect ratio,
  resized to the output size, and a flip; ``CentreCrop`` is its evaluation view (resize, then centre crop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to floats in [0, 1] (the paper trains its MNIST nets on raw pixels, §4.2); images that
    are already float (preprocessed) pass through."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


@dataclass(frozen=True)
class Augmentation:
    """The engine's random augmentation: zero-pad by ``pad`` and crop back at a random offset, then flip
    horizontally at random. Each example has a finite set of *views*, ``(2·pad + 1)² × (2 if flip else 1)`` of
    them (162 for pad 4 with flips), numbered ``(dy·(2·pad + 1) + dx)·2 + flipped`` (without flips: no last
    factor), so that the teacher-output store can keep one slot per view."""

    pad: int = 0
    flip: bool = False

    @property
    def views(self) -> int:
        return (2 * self.pad + 1) ** 2 * (2 if self.flip else 1)

    def __bool__(self) -> bool:
        """Whether the augmentation is random (the one test of "is the data augmented?")."""
        return bool(self.pad or self.flip)

    def __str__(self) -> str:
        return f"pad={self.pad}, flip={self.flip}"

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random view numbers (int64, CPU), drawn from ``generator``."""
        side = 2 * self.pad + 1
        view = torch.zeros(n, dtype=torch.long)
        if self.pad:
            dy = torch.randint(0, side, (n,), generator=generator)
            dx = torch.randint(0, side, (n,), generator=generator)
            view = dy * side + dx
        if self.flip:
            view = view * 2 + (torch.rand(n, generator=generator) < 0.5).long()
        return view

    def apply(self, images: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """The views ``view`` (one per image) of a uint8 or float batch ``(B, C, H, W)``, as whole tensors."""
        b, c, h, w = images.shape
        dev = images.device
        view = view.to(dev)
        flipped = None
        if self.flip:
            view, flipped = view // 2, (view % 2).bool()
        if self.pad:
            side = 2 * self.pad + 1
            dy, dx = view // side, view % side
            padded = torch.nn.functional.pad(images, (self.pad,) * 4)
            rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]   # (B, 1, H, 1)
            cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]   # (B, 1, 1, W)
            batch = torch.arange(b, device=dev)[:, None, None, None]
            chans = torch.arange(c, device=dev)[None, :, None, None]
            images = padded[batch, chans, rows, cols]                               # (B, C, H, W)
        if flipped is not None:
            images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
        return images


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 0, flip: bool = False) -> torch.Tensor:
    """Random translations (zero-pad by ``pad``, crop back at a random offset) and horizontal flips of a whole
    uint8 batch ``(B, C, H, W)`` at once."""
    aug = Augmentation(pad, flip)
    return aug.apply(images, aug.draw(len(images), generator))


_T = TypeVar("_T")


def pair(values: Sequence[_T]) -> tuple[_T, _T]:
    """A two-value sequence (``[H, W]`` or ``[low, high]`` from a config, a tensor's ``shape[-2:]``) as a pair."""
    first, second = values
    return first, second


def _affine(images: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sample ``images`` (B, C, H, W) through the affine maps ``theta`` (B, 2, 3) into ``size`` = (H', W'),
    bilinear, as floats in [0, 1]."""
    x = to_float(images)
    grid = F.affine_grid(theta.to(x.device, x.dtype), [len(x), x.shape[1], *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True)
class ResizedCrop:
    """Random-resized crop + horizontal flip (the ImageNet training recipe of Szegedy et al. 2015, as torchvision's
    ``RandomResizedCrop``): a crop covering a random ``scale`` share of the image's area with a random aspect
    ``ratio`` (log-uniform), at a random place, resized to ``size``. Departure from torchvision: instead of up to
    ten tries and a centre-crop fallback, a crop that would not fit is shrunk to fit (one draw, batched).

    Args:
        size: the output (H, W); ``None``: the input's.
    """

    size: tuple[int, int] | None = None
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    views = None   # continuously many: the store cannot keep one slot per view

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        ratio = [round(r, 3) for r in self.ratio]
        return f"random-resized-crop scale={list(self.scale)} ratio={ratio}, flip={self.flip}"

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``(n, 5)``: crop width and height (as shares of the image's), centre x and y (in [-1, 1]), flip sign."""
        u = torch.rand(n, 5, generator=generator, dtype=torch.float64)
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        log_ratio = math.log(self.ratio[0]) + (math.log(self.ratio[1]) - math.log(self.ratio[0])) * u[:, 1]
        w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
        h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
        cx, cy = (1 - w) * (2 * u[:, 2] - 1), (1 - h) * (2 * u[:, 3] - 1)
        sign = torch.where((u[:, 4] < 0.5) & self.flip, -1.0, 1.0)
        return torch.stack([w, h, cx, cy, sign], 1).float()

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        w, h, cx, cy, sign = params.unbind(1)
        zero = torch.zeros_like(w)
        theta = torch.stack([torch.stack([w * sign, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)  # (B, 2, 3)
        return _affine(images, theta, pair(self.size or images.shape[-2:]))


@dataclass(frozen=True)
class CentreCrop:
    """The evaluation view of ``ResizedCrop``: resize so that the centre ``crop`` share of the image fills
    ``size`` (ImageNet's resize 256 → centre crop 224 is ``crop = 0.875``). Not random."""

    size: tuple[int, int] | None = None
    crop: float = 0.875

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        theta = torch.tensor([[self.crop, 0.0, 0.0], [0.0, self.crop, 0.0]]).expand(len(images), 2, 3)
        return _affine(images, theta, pair(self.size or images.shape[-2:]))


# A run's random augmentation of its training batches, of either kind (``DataConfig.augmentation()``).
RandomAugmentation = Augmentation | ResizedCrop
