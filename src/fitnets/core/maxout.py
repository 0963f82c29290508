"""Maxout layers as used by the paper's networks (Goodfellow et al., 2013).

A maxout convolution ``k×k, C/p`` is a convolution with ``C·p`` filters followed by a max over groups of
``p`` consecutive channels, giving ``C`` maps (the unit every network of FitNets §4 is built from). pylearn2
applies the spatial max-pool after the channel max; the two commute (both are maxima), so the order is immaterial.
"""

from __future__ import annotations

import torch
from torch import nn


class Maxout(nn.Module):
    """Max over groups of ``pieces`` consecutive channels (dim 1): ``(B, C·p, ...) -> (B, C, ...)``."""

    def __init__(self, pieces: int):
        super().__init__()
        if pieces < 1:
            raise ValueError(f"maxout needs at least 1 piece, got {pieces}")
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pieces == 1:
            return x
        b, c = x.shape[:2]
        # (B, C·p, *S) -> (B, C, p, *S): the pieces of unit i are channels i·p .. i·p+p-1, as in pylearn2.
        return x.view(b, c // self.pieces, self.pieces, *x.shape[2:]).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


class MaxoutConv2d(nn.Module):
    """One layer of the paper's networks: maxout convolution, then an optional max-pool.

    Args:
        in_channels: input maps.
        out_channels: output maps (after the max over pieces).
        kernel_size: square kernel side.
        pieces: linear pieces per unit.
        padding: zero padding of the convolution.
        pool: ``(size, stride)`` of the max-pool, or ``None``. Pooling rounds up (``ceil_mode=True``) as
            pylearn2 does; with floor rounding the CIFAR teacher's hint would be 6×6 instead of 7×7.
        dropout: dropout probability on this layer's input (the teacher's regulariser; students use none).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pieces: int = 2,
                 padding: int = 0, pool: tuple[int, int] | None = None, dropout: float = 0.0):
        super().__init__()
        # Absent parts are None rather than nn.Identity, so `fitnets layers` lists only real layers.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.conv = nn.Conv2d(in_channels, out_channels * pieces, kernel_size, padding=padding)
        self.maxout = Maxout(pieces)
        self.pool = nn.MaxPool2d(pool[0], pool[1], ceil_mode=True) if pool else None

    @property
    def pieces(self) -> int:
        return self.maxout.pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.maxout(self.conv(x))
        return self.pool(x) if self.pool is not None else x
