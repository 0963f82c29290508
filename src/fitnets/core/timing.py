"""Inference speed, measured the same way for every network so that ratios are fair (the speed *options* of a
run are ``fitnets.training.speed``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from fitnets.core.modes import eval_mode


def median_seconds(fn: Callable[[], object], repeats: int = 10, warmup: int = 3,
                   device: torch.device | str = "cpu") -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones (CUDA synchronised)."""
    cuda = str(device).startswith("cuda")
    times = []
    for i in range(warmup + repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def inference_throughput(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 256,
                         repeats: int = 10, warmup: int = 3, device: torch.device | str = "cpu") -> float:
    """Median images per second of ``model`` in eval mode on random batches (after ``warmup`` untimed runs)."""
    x = torch.randn(batch_size, *input_shape, device=device)
    with eval_mode(model):
        return batch_size / median_seconds(lambda: model(x), repeats, warmup, device)
