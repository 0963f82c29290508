"""What ``--fast`` asks of the machine: whether it computes bf16 natively, whether ``torch.compile`` has a
compiler, the device's name (part of a cached choice's key), and how busy other work kept the CPU while the
candidates were timed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger("fitnets.training.fast")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products natively (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # AMX tiles; AVX-512 BF16 alone only speeds up large products
        check = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(check()) if check is not None else False
    return False


def compiler_available(device: torch.device) -> bool:
    """Whether ``torch.compile``'s default backend has what it needs here."""
    if device.type == "cuda":
        return importlib.util.find_spec("triton") is not None
    return shutil.which(os.environ.get("CXX", "g++")) is not None or shutil.which("c++") is not None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores"


def machine_cpu_seconds() -> float | None:
    """CPU time the whole machine has spent busy since boot, in seconds (``/proc/stat``); None without it."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = sum(ticks[3:5])  # idle, iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


class Contention:
    """How many cores other work kept busy over a span: the machine's busy CPU time less this process's own
    (``time.process_time``, all its threads), over the span's wall time (``clock``)."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.start = (machine_cpu_seconds(), time.process_time(), clock())

    def others(self) -> float | None:
        machine, own, wall = machine_cpu_seconds(), time.process_time(), self.clock()
        if machine is None or self.start[0] is None or wall <= self.start[2]:
            return None
        return max(0.0, (machine - self.start[0]) - (own - self.start[1])) / (wall - self.start[2])


def warn_if_busy(device: torch.device, contention: Contention) -> None:
    """On a CPU, a warning when other work kept at least half the cores busy while the candidates were timed:
    the choice then reflects the contention — on this project's 2-core machine, with another run beside it, bf16
    autocast no longer cleared the margin for the MNIST student (docs/results.md) — and later runs reuse it."""
    others, cores = contention.others(), os.cpu_count() or 1
    if device.type == "cpu" and others is not None and others >= cores / 2:
        log.warning("--fast: other work kept %.1f of %d cores busy while the options were timed: the choice "
                    "reflects that, and later runs reuse it from the cache (--fast=retune on a quieter machine "
                    "measures again)", others, cores)


