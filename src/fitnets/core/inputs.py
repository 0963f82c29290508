"""``InputFormat``: how a network wants its input batch — memory format and dtype — in one place.

The student's training step, every evaluation, the frozen teacher and the benchmarks all prepare a batch with
an ``InputFormat``, so a model trained in channels_last is also evaluated in channels_last, and a bf16 teacher
always receives bf16 inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class InputFormat:
    """Args:
        channels_last: give 4-d batches the channels_last memory format (same values, another layout; faster
            convolutions on many CPUs and on tensor-core GPUs).
        dtype: cast the batch to this dtype (``None``: leave it as it is).
    """

    channels_last: bool = False
    dtype: torch.dtype | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(self.dtype) if self.dtype is not None else x

    def apply_to(self, model: torch.nn.Module) -> torch.nn.Module:
        """Put ``model``'s weights in the same format (in place); returns the model."""
        if self.dtype is not None:
            model.to(self.dtype)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model
