"""Inference speed, measured the same way for every network so that ratios are fair."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from fitnets.modes import eval_mode


@torch.no_grad()
def inference_throughput(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 256,
                         repeats: int = 10, warmup: int = 3, device: torch.device | str = "cpu") -> float:
    """Median images per second of ``model`` in eval mode on random batches (after ``warmup`` untimed runs)."""
    x = torch.randn(batch_size, *input_shape, device=device)
    times = []
    with eval_mode(model):
        for i in range(warmup + repeats):
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)
