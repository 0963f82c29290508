"""A teacher-output store's files on disk: ``values.bin`` (``slots × width`` logits, memory-mapped),
``check.bin`` (one int64 per slot: 0 while empty, else a checksum of its values and position) and ``meta.json``;
how they are laid out atomically and how a slot is read, written and checked (``fitnets.training.store`` says why).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fitnets.training.speed import DTYPES

_BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16}

_WEIGHTS: dict[int, torch.Tensor] = {}


def _checksums(values: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """One nonzero int64 per row of ``values`` (stored dtype): a weighted sum of its bits and its slot number."""
    width = values.shape[1]
    if width not in _WEIGHTS:
        gen = torch.Generator().manual_seed(width)
        _WEIGHTS[width] = torch.randint(1, 1 << 20, (width,), generator=gen, dtype=torch.long) | 1
    bits = values.view(_BITS[values.dtype]).long()
    return ((bits * _WEIGHTS[width]).sum(1) + slots * 0x9E3779B1) | 1


def human_size(size: int) -> str:
    return f"{size / 2**30:.2f} GB" if size >= 2**30 else f"{size / 2**20:.1f} MB"


def slots_size(slots: int, width: int, dtype: torch.dtype) -> int:
    return slots * (width * dtype.itemsize + 8)


def read_meta(path: Path) -> dict[str, Any]:
    """A store's ``meta.json``.

    Raises:
        ValueError: it is not JSON, or not a JSON object.
    """
    meta = json.loads(path.read_text())
    if not isinstance(meta, dict):
        raise ValueError(f"its meta.json holds a JSON {type(meta).__name__}, not an object")
    return meta


class NotWritable(Exception):
    """A store's files cannot be mapped for writing (a read-only folder or file system)."""


class SlotFile:
    """A store's files, memory-mapped: ``values`` (slots × width) and ``check`` (slots,); ``writable=False``
    maps them privately, for reading a store one cannot write (``fitnets store list``)."""

    def __init__(self, path: Path, meta: dict[str, Any], writable: bool = True):
        self.path, self.meta = path, meta
        self.slots, self.width, self.dtype = meta["slots"], meta["width"], DTYPES[meta["dtype"]]
        values, check = path / "values.bin", path / "check.bin"
        if (not values.is_file() or values.stat().st_size != self.slots * self.width * self.dtype.itemsize
                or not check.is_file() or check.stat().st_size != self.slots * 8):
            raise ValueError("its files do not have the sizes its meta.json gives")
        try:
            self.values = torch.from_file(str(values), shared=writable, size=self.slots * self.width,
                                          dtype=self.dtype).view(self.slots, self.width)
            self.check = torch.from_file(str(check), shared=writable, size=self.slots, dtype=torch.long)
        except RuntimeError as err:  # "unable to open file <…> in read-write mode: Permission denied (13)"
            if not writable:
                raise OSError(str(err)) from None
            raise NotWritable(str(err).rsplit(": ", 1)[-1]) from None

    def read(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The values at ``slots`` (CPU int64) and which of them are filled and intact."""
        values = self.values[slots]
        return values, self.check[slots] == _checksums(values, slots)

    def write(self, slots: torch.Tensor, values: torch.Tensor) -> None:
        """Fill ``slots`` with ``values``: the values first, then their checksums (what marks them filled)."""
        values = values.to("cpu", self.dtype)
        self.values[slots] = values
        self.check[slots] = _checksums(values, slots)

    def _intact(self, chunk: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(intact, written)`` masks per chunk of ``chunk`` slots (by default ~4M values: 32 MB of checksum
        work at a time, whatever the store's size). A nonzero checksum says a slot was written; only one that
        matches its values says they are still the ones written."""
        chunk = chunk or max(1, (1 << 22) // self.width)
        for start in range(0, self.slots, chunk):
            check = self.check[start:start + chunk]
            slots = torch.arange(start, start + len(check))
            written = check != 0
            yield written & (check == _checksums(self.values[start:start + chunk], slots)), written

    def counts(self, chunk: int | None = None) -> tuple[int, int]:
        """``(filled, damaged)``: slots whose checksum matches their values, and slots written once whose
        checksum no longer does (a damaged file: computed again when a run reads them)."""
        filled = damaged = 0
        for intact, written in self._intact(chunk):
            filled += int(intact.sum())
            damaged += int((written & ~intact).sum())
        return filled, damaged

    def filled(self, chunk: int | None = None) -> int:
        return self.counts(chunk)[0]

    def empty_slots(self) -> torch.Tensor:
        """The slots to fill: never written, or damaged."""
        return (~torch.cat([intact for intact, _ in self._intact()])).nonzero()[:, 0]


def create_slots(path: Path, meta: dict[str, Any]) -> None:
    """Lay out a new store at ``path`` atomically: built in a temporary folder, then renamed into place (a
    process that loses the race uses the winner's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        item = DTYPES[meta["dtype"]].itemsize
        for name, size in (("values.bin", meta["slots"] * meta["width"] * item), ("check.bin", meta["slots"] * 8)):
            fd = os.open(tmp / name, os.O_CREAT | os.O_WRONLY, 0o644)
            try:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, size)  # the disk space is taken now, or refused now
                else:
                    os.ftruncate(fd, size)
            finally:
                os.close(fd)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


