"""An image-folder tree, one folder per class: ``ROOT/train/<class>/*.png`` and ``ROOT/test/<class>/...``
(``val/`` is accepted for ``test``). Classes are the sorted folder names. Images are decoded with Pillow
(``pip install fitnets[data]``), resized to a common size when asked, and held as uint8 tensors: this suits
folders up to a few hundred thousand small images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fitnets.errors import FitNetsError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def load_folder(root: Path, split: str, size: tuple[int, int] | None = None, progress: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor, int, list[str]]:
    try:
        from PIL import Image
    except ImportError:
        raise FitNetsError("reading image folders needs Pillow: pip install 'fitnets[data]'") from None
    split_dir = root / split
    if split == "test" and not split_dir.is_dir():
        split_dir = root / "val"
    if not split_dir.is_dir():
        raise FitNetsError(f"no {split}/ folder in {root}: expected {root}/train/<class>/<image> and {root}/test/...")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not classes:
        raise FitNetsError(f"{split_dir} has no class folders")
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((split_dir / name).iterdir())
             if f.suffix.lower() in EXTENSIONS]
    if not files:
        raise FitNetsError(f"{split_dir} has no images ({', '.join(sorted(EXTENSIONS))})")
    images = []
    for path, _ in tqdm(files, desc=f"reading {split_dir}", leave=False, disable=not progress):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if size is not None and img.size != (size[1], size[0]):
                    img = img.resize((size[1], size[0]))
                images.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
        except OSError as err:
            raise FitNetsError(f"cannot read image {path}: {err}") from None
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise FitNetsError(f"images in {split_dir} differ in size ({sorted(shapes)[:3]}...); set data.image_size")
    labels = torch.tensor([c for _, c in files], dtype=torch.int64)
    return torch.from_numpy(np.stack(images)), labels, len(classes), classes
