"""ShuffleNetV2 (Ma et al., 2018) as the CIFAR-100 distillation benchmark uses it as a student (``ShuffleV2`` in
RepDistiller: a 1×1 stem to 24 channels with no downsampling, three stages of widths 116/232/464 each opening
with a stride-2 down block followed by 3/7/3 basic blocks, a 1×1 conv to 1024, a 4×4 average pool, linear).
Architecture facts from the benchmark's ``models/ShuffleNetv2.py``; the parameter count follows from them
(tested). Default guided layer: ``layer2`` (8×8×232)."""

from __future__ import annotations

import torch
from torch import nn

from fitnets.models.registry import register_model


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Half the channels pass through; the other half go 1×1 → depthwise 3×3 → 1×1; concatenate, shuffle."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(_conv_bn(half, half, 1), _conv_bn(half, half, 3, groups=half, relu=False),
                                    _conv_bn(half, half, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, work = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([keep, self.branch(work)], 1))


class DownBlock(nn.Module):
    """Two stride-2 branches, each producing half of ``c_out`` channels; concatenate, shuffle."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        mid = c_out // 2
        self.left = nn.Sequential(_conv_bn(c_in, c_in, 3, 2, groups=c_in, relu=False), _conv_bn(c_in, mid, 1))
        self.right = nn.Sequential(_conv_bn(c_in, mid, 1), _conv_bn(mid, mid, 3, 2, groups=mid, relu=False),
                                   _conv_bn(mid, mid, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1))


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int = 100, widths: tuple[int, int, int, int] = (116, 232, 464, 1024),
                 blocks: tuple[int, int, int] = (3, 7, 3), in_channels: int = 3):
        super().__init__()
        self.stem = _conv_bn(in_channels, 24, 1)
        channels, stages = 24, []
        for width, n in zip(widths[:3], blocks):
            stages.append(nn.Sequential(DownBlock(channels, width), *[BasicBlock(width) for _ in range(n)]))
            channels = width
        self.layer1, self.layer2, self.layer3 = stages
        self.head = _conv_bn(channels, widths[3], 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(widths[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))   # (B, 464, 4, 4) for 32×32 inputs
        return self.linear(self.pool(self.head(x)).flatten(1))


register_model("shufflenetv2", lambda num_classes=100, **kw: ShuffleNetV2(num_classes, **kw), input_shape=(3, 32, 32),
               guided="layer2", description="ShuffleNetV2 1.0× for CIFAR (the benchmark's ShuffleV2)")
