"""Students of the paper's depth study (FitNets §4.4, Figure 2): at a fixed budget of multiplications,
thinner nets with 5, 7, 9 or 11 layers.

The reference gives the budgets (~30M and ~107M multiplications on CIFAR-10) and the depths, not the layer
widths; these networks are our own construction in the FitNets style: 3×3 maxout convolutions (2 pieces,
pad 1) in three blocks of widths ``w, 2w, 3w``, 2×2 max-pools after blocks 1 and 2, a global max-pool after
block 3, an fc maxout layer and a softmax (so depth = convs + 2). Convs per block: 5 layers (1, 1, 1), 7 layers
(2, 2, 1), 9 layers (3, 2, 2), 11 layers (3, 3, 3). The width ``w`` is the largest that keeps the
multiplications (paper convention: 2 pieces everywhere) within the budget. The guided layer is the last conv
of block 2.

Registered: ``depth{L}-30m`` and ``depth{L}-107m`` for CIFAR (3×32×32), and ``fmnist-depth{L}`` at a 5M budget
for 1×28×28 inputs (the Fashion-MNIST version of the study; not in the paper).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from fitnets.core.maxout import MaxoutConv2d
from fitnets.models.paper_cifar import MaxoutLinear
from fitnets.models.registry import register_model

LAYOUT = {5: (1, 1, 1), 7: (2, 2, 1), 9: (3, 2, 2), 11: (3, 3, 3)}


class ThinDeepNet(nn.Module):
    def __init__(self, depth: int, width: int, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 fc_units: int = 500, fc_pieces: int = 5):
        super().__init__()
        if depth not in LAYOUT:
            raise ValueError(f"depth must be one of {sorted(LAYOUT)}, not {depth}")
        channels, size, blocks = in_channels, input_size, []
        for b, (convs, mult) in enumerate(zip(LAYOUT[depth], (1, 2, 3))):
            layers = []
            for i in range(convs):
                last = i == convs - 1
                pool = (2, 2) if last and b < 2 else None
                layers.append(MaxoutConv2d(channels, width * mult, 3, 2, padding=1, pool=pool))
                channels = width * mult
            size = -(-size // 2) if b < 2 else size
            blocks.append(nn.Sequential(*layers))
        self.block1, self.block2, self.block3 = blocks
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = MaxoutLinear(channels, fc_units, fc_pieces)
        self.classifier = nn.Linear(fc_units, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.classifier(self.fc(self.pool(x).flatten(1)))


def _macs(depth: int, width: int, in_channels: int, input_size: int, fc_units: int) -> int:
    """Multiplications under the paper's convention (2 pieces everywhere), computed in closed form."""
    total, channels, size = 0, in_channels, input_size
    for b, (convs, mult) in enumerate(zip(LAYOUT[depth], (1, 2, 3))):
        for _ in range(convs):
            total += size * size * 2 * width * mult * channels * 9
            channels = width * mult
        if b < 2:
            size = -(-size // 2)
    return total + channels * fc_units * 2 + fc_units * 10


@functools.cache
def width_for_budget(depth: int, budget: float, in_channels: int = 3, input_size: int = 32, fc_units: int = 500) -> int:
    width = 1
    while _macs(depth, width + 1, in_channels, input_size, fc_units) <= budget:
        width += 1
    return width


def _register(name: str, depth: int, budget: float, in_channels: int, input_size: int, fc_units: int) -> None:
    width = width_for_budget(depth, budget, in_channels, input_size, fc_units)

    def build(num_classes: int = 10, fc_pieces: int = 5):
        return ThinDeepNet(depth, width, num_classes, in_channels, input_size, fc_units, fc_pieces)

    register_model(name, build, input_shape=(in_channels, input_size, input_size),
                   guided=f"block2.{LAYOUT[depth][1] - 1}", paper_kwargs={"fc_pieces": 2},
                   description=f"depth study: {depth} layers, width {width}/{2 * width}/{3 * width}, "
                               f"≤ {budget / 1e6:.0f}M multiplications (our construction)")


for _depth in LAYOUT:
    _register(f"depth{_depth}-30m", _depth, 30e6, 3, 32, 500)
    _register(f"depth{_depth}-107m", _depth, 107e6, 3, 32, 500)
    _register(f"fmnist-depth{_depth}", _depth, 5e6, 1, 28, 100)
