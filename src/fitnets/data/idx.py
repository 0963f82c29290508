"""The IDX file format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/), gzipped or not.

Header: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then each dimension as a
big-endian int32; the data follow in C order.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from fitnets.errors import FitNetsError

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


def read_idx(path: str | Path, hint: str = "") -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a numpy array.

    Raises:
        FitNetsError: the file is unreadable, its header is not IDX, or its size disagrees with the header.
            ``hint`` (how to get good files) is appended to the message.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise FitNetsError(f"cannot read {path}: {err}. {hint}".rstrip()) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise FitNetsError(f"{path} is not an IDX file (bad header). {hint}".rstrip())
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise FitNetsError(f"{path} is truncated (incomplete header). {hint}".rstrip())
    shape = struct.unpack(f">{ndim}i", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise FitNetsError(f"{path} is truncated or corrupt: header says {shape} ({expected} bytes), "
                           f"found {len(body)} bytes. {hint}".rstrip())
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8 or int8) as an IDX file, gzipped when ``path`` ends in ``.gz``."""
    array = np.ascontiguousarray(array)
    header = bytes([0, 0, _CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    data = header + array.tobytes()
    Path(path).write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)
