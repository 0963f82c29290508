"""``InputFormat``: how a network wants its input batch — memory format and dtype — in one place.

The student's training step, every evaluation, the frozen teacher and the benchmarks all prepare a batch with
an ``InputFormat``, so a model trained in channels_last is also evaluated in channels_last, and a bf16 teacher
always receives bf16 inputs. ``batch_checked``: that an example input is a batch at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from fitnets.errors import FitNetsError


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
            model.to(dtype=self.dtype)
        if self.channels_last:
            # Module.to takes memory_format at run time (torch._C._nn._parse_to); its type stubs do not list it.
            model.to(memory_format=torch.channels_last)  # pyright: ignore[reportCallIssue]
        return model


@contextmanager
def batch_checked(model: nn.Module, what: str = "example_input") -> Iterator[None]:
    """A block in which the first convolution of ``model`` to run refuses an input without a batch dimension.

    A convolution also takes a single unbatched example (``(C, H, W)`` for a ``Conv2d``); the model then runs, and
    every output lacks the batch dimension — a ``(C, H, W)`` map would be read as a batch of token sequences.

    Raises:
        FitNetsError: naming ``what``, its shape, and the convolution that wanted a batch.
    """
    names = {module: name for name, module in model.named_modules()}
    handles = []

    def hook(conv: nn.Module, args) -> None:
        for handle in handles:  # the first convolution to run tells; the others take what it made
            handle.remove()
        x = args[0] if args else None
        dims = conv.weight.dim() if isinstance(conv.weight, torch.Tensor) else None
        if isinstance(x, torch.Tensor) and dims is not None and x.dim() == dims - 1:
            raise FitNetsError(f"{what} has shape {tuple(x.shape)}: no batch dimension ({names[conv] or 'the model'}, "
                               f"a {type(conv).__name__}, takes {dims}-d batches); give a batch, e.g. "
                               f"{what}.unsqueeze(0)")

    handles += [m.register_forward_pre_hook(hook) for m in model.modules()
                if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
