"""In-memory datasets and batches: images stay uint8 tensors, batches are augmented as whole tensors.

The MNIST family is 47 MB as uint8, so the whole set lives in memory (on the training device when that is a
GPU) and a batch is one index into it: no Dataset objects, no worker processes, nothing to wait for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch

from fitnets.data.augment import Augmentation, to_float
from fitnets.data.folder import open_folder
from fitnets.data.idx import read_idx
from fitnets.data.images import ImageData
from fitnets.data.sources import SPLIT_FILES, download, locate, search_roots, source
from fitnets.data.split import Split
from fitnets.errors import FitNetsError, closest


def load_idx_dataset(name: str, split: str, data_dir: str | os.PathLike | None = None,
                     download_missing: bool = False) -> ImageData:
    """Load the ``"train"`` or ``"test"`` split of ``"fashion-mnist"`` or ``"mnist"``.

    Raises:
        FitNetsError: the files are missing (and ``download_missing`` is off or fails) or corrupt.
    """
    if split not in SPLIT_FILES:
        raise FitNetsError(f"unknown split {split!r}; use 'train' or 'test'")
    try:
        files = locate(name, data_dir)
    except FitNetsError:
        if not download_missing:
            raise
        download(name, data_dir)  # into the folder the user named, if any
        files = locate(name, data_dir)
    hint = f"To get good files: {source(name).how_to_get}."
    image_stem, label_stem = SPLIT_FILES[split]
    images = read_idx(files[image_stem], hint)
    labels = read_idx(files[label_stem], hint)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise FitNetsError(f"{files[image_stem]} and {files[label_stem]} do not form an image/label pair "
                           f"(shapes {images.shape} and {labels.shape}). {hint}")
    if labels.max() >= 10:
        raise FitNetsError(f"{files[label_stem]} holds labels ≥ 10; it is corrupt. {hint}")
    return ImageData(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype("int64")), 10)


DATASETS = ("fashion-mnist", "mnist", "cifar10", "cifar100", "svhn", "folder")


def load_dataset(name: str, split: str, data_dir: str | os.PathLike | None = None, download: bool = False,
                 image_size: tuple[int, int] | None = None, stream: bool | None = None, memory_gb: float = 4.0,
                 workers: int = 4) -> Split:
    """Any supported dataset's ``"train"`` or ``"test"`` split as uint8 tensors in memory — or, for a large
    image folder, as a ``FolderStream`` read from disk batch by batch.

    Args:
        name: ``fashion-mnist``, ``mnist`` (IDX files), ``cifar10``, ``cifar100`` (python pickles), ``svhn``
            (``.mat`` files) or ``folder`` (an image folder tree at ``data_dir``).
        download: fetch the official files when missing (the IDX datasets).
        image_size: resize folder images to ``(H, W)``.
        stream: folders only: True reads through a DataLoader with ``workers`` processes, False decodes into
            memory, None streams when the decoded images would take more than ``memory_gb`` GiB.
    """
    if stream and name != "folder":
        raise FitNetsError(f"data.stream applies to image folders only; {name} is read into memory")
    if name in ("fashion-mnist", "mnist"):
        return load_idx_dataset(name, split, data_dir, download)
    if split not in ("train", "test"):
        raise FitNetsError(f"unknown split {split!r}; use 'train' or 'test'")
    roots = search_roots(name, data_dir)
    if name in ("cifar10", "cifar100"):
        from fitnets.data.cifar import load_cifar

        images, labels, classes = load_cifar(name, split, roots)
    elif name == "svhn":
        from fitnets.data.svhn import load_svhn

        images, labels, classes = load_svhn(split, roots)
    elif name == "folder":
        if data_dir is None:
            raise FitNetsError("dataset 'folder' needs --data-dir ROOT (with ROOT/train/<class>/... and ROOT/test/...)")
        return open_folder(Path(data_dir), split, image_size, stream, memory_gb, workers)
    else:
        raise FitNetsError(f"unknown dataset {name!r}.{closest(name, DATASETS)} Known: {', '.join(DATASETS)}")
    return ImageData(images, labels, classes)


def split_validation(data: Split, val_size: int, seed: int = 0) -> tuple[Split, Split]:
    """Hold out ``val_size`` examples (a fixed random draw given ``seed``) for model selection."""
    if not 0 <= val_size < len(data):
        raise FitNetsError(f"data.val_size = {val_size} is not below the {len(data)} training examples; set a "
                           "smaller val_size (--val-size, val_size=) or give a validation split")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(order[val_size:]), data.subset(order[:val_size])


def take(data: Split, n: int | None, seed: int = 0) -> Split:
    """A fixed random subset of ``n`` examples (all of them when ``n`` is None or too large)."""
    if n is None or n >= len(data):
        return data
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 1))
    return data.subset(order[:n])


def batches(data: Split, batch_size: int, *, shuffle: bool = False, seed: int = 0,
            epoch: int = 0, pad: int = 0, flip: bool = False, aug=None, drop_last: bool = False,
            rank: int = 0, world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Float image batches, labels and the examples' keys, which teacher outputs are looked up by: their indices
    in ``data`` — with an augmentation of finitely many views (pad-flip), the indices of the views the batch
    holds, ``example × views + view`` (``Augmentation``; the example is ``key // views``); where the view is drawn
    (your Dataset's transforms, random-resized-crop), ``epoch × len(data) + example``, which names it given the
    seed.

    ``aug`` is the random augmentation (``fitnets.data.augment``; default: ``Augmentation(pad, flip)``): drawn
    per batch from the epoch's generator for data in memory or a folder, per item from the item's own seed for a
    user's ``DatasetSplit``. Either way the order and augmentation of an epoch depend only on ``(seed, epoch)``,
    so a resumed run sees exactly the batches an uninterrupted one would, and a ``FolderStream`` gives the
    batches its in-memory form would. The split's ``view`` (the evaluation crop) and ``normalize`` (mean/std)
    come last. With ``world_size > 1`` each rank gets its interleaved share of every global batch."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    aug = aug if aug is not None else Augmentation(pad, flip)
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)  # on the CPU: each split reads
    # its shares where it keeps its data
    stop = n - n % batch_size if drop_last else n
    shares = [order[start:start + batch_size][rank::world_size] for start in range(0, stop, batch_size)]
    if data.reads_items:  # read, augmented and normalised item by item in the DataLoader's workers
        for index, (x, labels) in zip(shares, data.read(shares, seed, epoch, aug), strict=True):
            yield x, labels, (epoch * n + index).to(data.device)   # a drawn view: keyed by (epoch, example)
        return
    for index, (images, labels) in zip(shares, data.read(shares, seed, epoch, aug), strict=True):
        key = index.to(data.device)
        if data.view is not None:
            images = data.view(images)
        if aug:  # drawn from the same generator in the same order for in-memory and streamed data
            params = aug.draw(len(images), generator)
            images = aug.apply(images, params)
            if aug.views:
                key = key * aug.views + params.to(key.device)
            else:  # views drawn from a continuum (random-resized-crop): keyed by (epoch, example) under the seed
                key = epoch * n + key
        x = to_float(images)
        yield (data.normalize(x) if data.normalize is not None else x), labels, key


def example(data: Split, n: int = 2, aug=None) -> torch.Tensor:
    """The first ``n`` inputs as training reads them (augmented by ``aug``, normalised): what the models are
    checked and the FitNet's layers measured on."""
    head = data.subset(torch.arange(min(n, len(data)))).quick()  # a few items: no worker processes to start
    return next(batches(head, n, aug=aug))[0]
