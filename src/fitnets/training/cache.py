"""The cache folder (``$FITNETS_CACHE``, else ``~/.cache/fitnets``) and the teacher-output stores in it, as
``fitnets store list`` and ``fitnets store clear`` see them; ``--fast``'s choices live there too (``fast.json``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fitnets.errors import FitNetsError
from fitnets.training.speed import DTYPES
from fitnets.training.store_slots import SlotFile, read_meta, slots_size

CACHE_ENV = "FITNETS_CACHE"


def cache_root() -> Path:
    """``$FITNETS_CACHE``, else ``~/.cache/fitnets`` (created when first written).

    Raises:
        FitNetsError: ``$FITNETS_CACHE`` names something that is not a folder (a file, say).
    """
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fitnets")
    if root.exists() and not root.is_dir():
        raise FitNetsError(f"${CACHE_ENV} is {root}, which is not a folder: point it at a folder (created if "
                           "missing), or unset it to use ~/.cache/fitnets")
    return root


def stores_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / "stores"




@dataclass
class StoreInfo:
    """What ``fitnets store list`` shows of a store (from its ``meta.json`` and its checksums): ``filled`` slots
    are intact; ``damaged`` ones hold a checksum that does not match (computed again when a run reads them)."""

    path: Path
    meta: dict[str, Any]
    filled: int
    damaged: int = 0

    @property
    def slots(self) -> int:
        return self.meta["slots"]

    @property
    def size_bytes(self) -> int:
        return slots_size(self.meta["slots"], self.meta["width"], DTYPES[self.meta["dtype"]])


def list_stores(root: Path | None = None) -> list[StoreInfo]:
    """Every store under ``root`` (``cache_root()`` when None), with how many slots are intact and damaged
    (each slot's checksum read again: one pass over the store's files, in chunks). Stores one cannot write are
    read all the same."""
    found = []
    for path in sorted(stores_dir(root).glob("*/meta.json")):
        try:
            meta = read_meta(path)
            found.append(StoreInfo(path.parent, meta, *SlotFile(path.parent, meta, writable=False).counts()))
        except (ValueError, KeyError, TypeError, OSError):
            found.append(StoreInfo(path.parent, {"slots": 0, "width": 0, "dtype": "float32", "damaged": True}, 0))
    return found


def clear_stores(root: Path | None = None, key: str | None = None) -> list[Path]:
    """Delete every store under ``root`` (or those whose key starts with ``key``); returns what was deleted.

    Raises:
        FitNetsError: ``key`` is empty (it would name every store), names no store, or a store cannot be deleted.
    """
    base = stores_dir(root)
    if key is not None and not key.strip():
        raise FitNetsError("an empty key names every teacher-output store: give a store's key (or its first "
                           "characters, as `fitnets store list` shows them), or no key to delete them all")
    paths = [p for p in sorted(base.glob("*")) if p.is_dir() and (key is None or p.name.startswith(key))]
    if key is not None and not paths:
        raise FitNetsError(f"no teacher-output store {key!r} in {base} (see `fitnets store list`)")
    for i, path in enumerate(paths):
        try:
            shutil.rmtree(path)
        except OSError as err:
            done = f" ({i} deleted before it)" if i else ""
            raise FitNetsError(f"cannot delete the teacher-output store {path}: {err.strerror or err}{done}; make "
                               f"{base} writable, or delete it as the user who can") from None
    return paths


