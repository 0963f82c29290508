"""``--fast``: one flag for the speed options measured safe for accuracy, resolved for the hardware at hand.

* the teacher in bf16, and teacher outputs cached or stored in bf16 (its logits and hints agree with fp32 to
  within the bounds the tests check; docs/results.md has the accuracy comparison);
* the student's forward and backward under bf16 autocast, where the hardware computes in bf16 natively (CUDA
  GPUs with bf16, CPUs with AMX tiles); elsewhere the student stays fp32. On a CPU with AVX-512 BF16 but no
  AMX (this project's machine), bf16 autocast slowed the paper's small MNIST student (docs/results.md: 880
  against 1,201 images/s for the same KD step in fp32): casts cost more than the small products gain;
* channels_last for the student (the teacher uses it already by default);
* ``torch.compile`` where a compiler works (a C++ compiler on CPU, Triton on CUDA).
Explicit flags and ``--set`` keys given with ``--fast`` override what it sets.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products natively (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # AMX tiles; AVX-512 BF16 alone only speeds up large products (see below)
        check = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(check()) if check is not None else False
    return False


def compiler_available(device: torch.device) -> bool:
    """Whether ``torch.compile``'s default backend has what it needs here."""
    if device.type == "cuda":
        return importlib.util.find_spec("triton") is not None
    return shutil.which(os.environ.get("CXX", "g++")) is not None or shutil.which("c++") is not None


def fast_options(device: torch.device) -> list[tuple[str, Any]]:
    """The config keys ``--fast`` sets on ``device``, as ``(dotted key, value)`` overrides."""
    options: list[tuple[str, Any]] = [("teacher_dtype", "bfloat16"), ("cache_dtype", "bfloat16"),
                                      ("channels_last", True), ("teacher_channels_last", True)]
    if native_bf16(device):
        options.append(("student_dtype", "bfloat16"))
    if compiler_available(device):
        options.append(("compile", True))
    return options
