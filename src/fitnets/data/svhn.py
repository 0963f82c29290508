"""SVHN (http://ufldl.stanford.edu/housenumbers/) from its cropped-digit ``.mat`` files: ``train_32x32.mat``,
``test_32x32.mat`` and optionally ``extra_32x32.mat``, each with ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1),
digit 0 stored as label 10. Reading MATLAB files needs scipy (``pip install fitnets[data]``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fitnets.errors import FitNetsError

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


def _loadmat():
    try:
        from scipy.io import loadmat
    except ImportError:
        raise FitNetsError("reading SVHN's .mat files needs scipy: pip install 'fitnets[data]'") from None
    return loadmat


def find_svhn(roots: list[Path], split: str) -> Path:
    for root in roots:
        for candidate in (root, root / "svhn", root / "SVHN"):
            if (candidate / FILES[split]).is_file():
                return candidate / FILES[split]
    raise FitNetsError(f"SVHN {FILES[split]} not found in {', '.join(map(str, roots))}; download the cropped "
                       "digits (format 2) from http://ufldl.stanford.edu/housenumbers/ and pass --data-dir")


def load_svhn(split: str, roots: list[Path]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) in 0..9. The ``train`` split includes ``extra`` when that
    file is present next to it (the paper trains on both, §4.3)."""
    loadmat = _loadmat()
    parts = [split] + (["extra"] if split == "train" else [])
    images, labels = [], []
    for part in parts:
        try:
            path = find_svhn(roots, part)
        except FitNetsError:
            if part == "extra":
                continue
            raise
        try:
            mat = loadmat(str(path))
            x = np.asarray(mat["X"], dtype=np.uint8)
            y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
        except Exception as err:  # scipy raises several types for damaged files
            raise FitNetsError(f"cannot read {path}: {err}; it is corrupt or not an SVHN .mat file") from None
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
            raise FitNetsError(f"{path} has X of shape {x.shape} and {len(y)} labels: not SVHN cropped digits")
        images.append(x.transpose(3, 2, 0, 1))  # (32, 32, 3, N) -> (N, 3, 32, 32)
        labels.append(np.where(y == 10, 0, y))
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(images))), torch.from_numpy(np.concatenate(labels)), 10
