"""An image-folder tree, one folder per class: ``ROOT/train/<class>/*.png`` and ``ROOT/test/<class>/...``
(``val/`` is accepted for ``test``). Classes are the sorted folder names. Images are decoded with Pillow
(``pip install fitnets[data]``) and resized to a common size when asked.

Two ways to hold them, chosen by ``open_folder`` from the size the decoded images would take: an in-memory
``ImageData`` (every image decoded once into uint8 tensors, like the small datasets: no worker processes, a
batch is one index), or a ``FolderStream`` that keeps only the file list and decodes each batch in DataLoader
worker processes, for folders too large for memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fitnets.data.images import ImageData
from fitnets.data.split import Replaceable, add_views, worker_message
from fitnets.errors import FitNetsError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise FitNetsError("reading image folders needs Pillow: pip install 'fitnets[data]'") from None
    return Image


def list_folder(root: Path, split: str) -> tuple[list[str], torch.Tensor, list[str]]:
    """The image files of a split (sorted by class, then name), their labels, and the class names."""
    split_dir = root / split
    if split == "test" and not split_dir.is_dir():
        split_dir = root / "val"
    if not split_dir.is_dir():
        raise FitNetsError(f"no {split}/ folder in {root}: expected {root}/train/<class>/<image> and {root}/test/...")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not classes:
        raise FitNetsError(f"{split_dir} has no class folders")
    files = [(str(f), c) for c, name in enumerate(classes) for f in sorted((split_dir / name).iterdir())
             if f.suffix.lower() in EXTENSIONS]
    if not files:
        raise FitNetsError(f"{split_dir} has no images ({', '.join(sorted(EXTENSIONS))})")
    return [f for f, _ in files], torch.tensor([c for _, c in files], dtype=torch.int64), classes


@contextmanager
def _opened(path: str):
    """The image at ``path``, opened with Pillow; an unreadable file is a one-line error naming it."""
    try:
        with _pillow().open(path) as img:
            yield img
    except OSError as err:
        raise FitNetsError(f"cannot read image {path}: {err}") from None


def read_image(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image as uint8 ``(3, H, W)``, resized to ``size`` = ``(H, W)`` when given and different."""
    with _opened(path) as img:
        img = img.convert("RGB")
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]))
        return np.array(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1), order="C")  # writable copy


def image_size(path: str) -> tuple[int, int]:
    """``(H, W)`` of an image, from its header."""
    with _opened(path) as img:
        return img.size[1], img.size[0]


def _decode(files: list[str], size: tuple[int, int] | None, progress: bool, where: Path) -> torch.Tensor:
    images = [read_image(f, size) for f in tqdm(files, desc=f"reading {where}", leave=False, disable=not progress)]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise FitNetsError(f"images in {where} differ in size ({sorted(shapes)[:3]}...); set data.image_size")
    return torch.from_numpy(np.stack(images))


class FolderStream(Replaceable, torch.utils.data.Dataset):
    """A folder dataset read from disk as it is used: ``dataset[i]`` decodes image ``i``.

    It stands where an ``ImageData`` does (``len``, ``labels``, ``num_classes``, ``subset``, ``to``,
    ``device``, ``head``); ``fitnets.data.batches`` reads it through a ``torch.utils.data.DataLoader`` with
    ``workers`` processes (pinned memory on CUDA) and augments each batch on the device, as for in-memory
    data. Images are resized to ``size`` when ``resize``; otherwise each must already have that size.
    """

    view: Callable | None = None  # as ImageData's
    normalize: Callable | None = None
    fixed, in_memory, reads_items = True, False, False

    def __init__(self, files: list[str], labels: torch.Tensor, num_classes: int, size: tuple[int, int],
                 resize: bool = True, workers: int = 4, device: torch.device | str = "cpu"):
        self.files, self.labels, self.num_classes = files, labels, num_classes
        self.size, self.resize, self.workers, self._device = (size[0], size[1]), resize, workers, torch.device(device)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = read_image(self.files[i], self.size if self.resize else None)
        if image.shape[1:] != self.size:
            raise FitNetsError(f"image {self.files[i]} is {image.shape[2]}×{image.shape[1]}, not "
                               f"{self.size[1]}×{self.size[0]} like the first one; set data.image_size")
        return torch.from_numpy(image)

    @property
    def device(self) -> torch.device:
        return self._device

    def subset(self, index: torch.Tensor) -> FolderStream:
        return self.replace(files=[self.files[i] for i in index.tolist()], labels=self.labels[index.cpu()])

    def to(self, device: torch.device | str) -> FolderStream:
        return self.replace(_device=torch.device(device))

    def read(self, shares: list[torch.Tensor], seed: int = 0, epoch: int = 0, aug: Any = None
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Each batch decoded by DataLoader workers, on the split's device (the engine augments it whole)."""
        from torch.utils.data import DataLoader

        cuda = self.device.type == "cuda"
        loader = DataLoader(self, batch_sampler=[s.tolist() for s in shares], num_workers=self.workers,
                            pin_memory=cuda)
        try:
            for images, share in zip(loader, shares, strict=True):
                yield images.to(self.device, non_blocking=cuda), self.labels[share.cpu()].to(self.device)
        except FitNetsError as err:  # raised in a worker: the DataLoader re-raises it with the worker's traceback
            raise FitNetsError(worker_message(err)) from None

    def check(self) -> None:
        """Nothing to check: our own readers made these labels and images (``Split.check``)."""

    def add_identity(self, h: Any) -> None:
        """The files, their size and whether they are resized (and the view and normalisation)."""
        h.update(json.dumps([self.files, list(self.size), self.resize]).encode())
        add_views(h, self)

    def head(self, n: int) -> torch.Tensor:
        """The first ``n`` images, uint8 on the device."""
        return torch.stack([self[i] for i in range(min(n, len(self)))]).to(self._device)


def open_folder(root: Path, split: str, size: tuple[int, int] | None = None, stream: bool | None = None,
                memory_gb: float = 4.0, workers: int = 4, progress: bool = True):
    """The split as an in-memory ``ImageData`` or as a ``FolderStream``: ``stream=None`` streams when the
    decoded images would take more than ``memory_gb`` GiB."""
    files, labels, classes = list_folder(root, split)
    if stream is not False:
        h, w = size or image_size(files[0])
        if stream or len(files) * 3 * h * w > memory_gb * 2**30:
            return FolderStream(files, labels, len(classes), (h, w), size is not None, workers)
    return ImageData(_decode(files, size, progress, root / split), labels, len(classes))
