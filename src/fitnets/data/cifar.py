"""CIFAR-10 and CIFAR-100 from their standard "python version" pickles (https://www.cs.toronto.edu/~kriz/cifar.html).

CIFAR-10: ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5`` and ``test_batch``, each a pickled dict with
``data`` (N × 3072 uint8, channel-major 32×32 images) and ``labels``. CIFAR-100: ``cifar-100-python/train`` and
``test`` with ``fine_labels``. Pickles can run code when loaded, so they are read with an unpickler that only
rebuilds plain containers and numpy arrays.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from fitnets.errors import FitNetsError

_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("builtins", "bytes"),
            ("_codecs", "encode")}  # protocol-2 pickles from Python 3 rebuild bytes through _codecs.encode

LAYOUT = {
    "cifar10": ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                "labels", 10),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "fine_labels", 100),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")
        return super().find_class(module, name)


def read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _SafeUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as err:
        raise FitNetsError(f"cannot read CIFAR batch {path}: {err}; it is corrupt or not a CIFAR python "
                           "batch (get 'CIFAR-10/100 python version' from "
                           "https://www.cs.toronto.edu/~kriz/cifar.html)") from None
    if not isinstance(batch, dict):
        raise FitNetsError(f"{path} is not a CIFAR python batch")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray, label_key: str = "labels") -> None:
    """Write a batch in the real format (used by the tests): ``images`` (N, 3, 32, 32) uint8."""
    batch = {b"data": images.reshape(len(images), -1), label_key.encode(): labels.tolist(), b"batch_label": b"x"}
    Path(path).write_bytes(pickle.dumps(batch, protocol=2))


def find_cifar(name: str, roots: list[Path]) -> Path:
    folder, files, _, _ = LAYOUT[name]
    for root in roots:
        for candidate in (root / folder, root / name / folder, root):
            if all((candidate / f).is_file() for split in files.values() for f in split):
                return candidate
    raise FitNetsError(f"{name} not found (looked for {folder}/ in {', '.join(map(str, roots))}); download the "
                       "'python version' from https://www.cs.toronto.edu/~kriz/cifar.html, extract it and pass "
                       "--data-dir")


def load_cifar(name: str, split: str, roots: list[Path]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Images (N, 3, 32, 32) uint8, labels (N,) int64, number of classes."""
    folder = find_cifar(name, roots)
    _, files, label_key, classes = LAYOUT[name]
    images, labels = [], []
    for filename in files[split]:
        batch = read_batch(folder / filename)
        try:
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            target = np.asarray(batch[label_key], dtype=np.int64)
        except (KeyError, ValueError) as err:
            raise FitNetsError(f"{folder / filename} is not a {name} batch ({err})") from None
        if len(data) != len(target) or (len(target) and (target.min() < 0 or target.max() >= classes)):
            raise FitNetsError(f"{folder / filename} is corrupt: {len(data)} images, {len(target)} labels in "
                               f"[{target.min() if len(target) else '-'}, {target.max() if len(target) else '-'}]")
        images.append(data)
        labels.append(target)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)), classes
