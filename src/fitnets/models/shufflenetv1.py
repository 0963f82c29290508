"""ShuffleNet (V1; Zhang et al., 2018) as the CIFAR-100 distillation benchmark uses it as a student (``ShuffleV1``
in RepDistiller: 3 groups, a 1×1 stem to 24 channels, stages of widths 240/480/960 with 4/8/4 bottlenecks, the
first of each with stride 2 and an average-pooled shortcut concatenated, a 4×4 average pool, linear).
Architecture facts from the benchmark's ``models/ShuffleNetv1.py``; the parameter count follows from them
(tested). Default guided layer: ``layer2`` (8×8×480)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fitnets.models.registry import register_model
from fitnets.models.shufflenetv2 import channel_shuffle


class Bottleneck(nn.Module):
    """Grouped 1×1 → shuffle → depthwise 3×3 (stride) → grouped 1×1; added to the input, or concatenated with
    its 3×3 average pool when the block downsamples."""

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int):
        super().__init__()
        mid = c_out // 4
        self.first_groups = 1 if c_in == 24 else groups  # the stem's 24 channels are not split (as the benchmark)
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, mid, 1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = channel_shuffle(F.relu(self.bn1(self.conv1(x))), self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            return F.relu(torch.cat([out, F.avg_pool2d(x, 3, 2, 1)], 1))
        return F.relu(out + x)


class ShuffleNetV1(nn.Module):
    def __init__(self, num_classes: int = 100, widths: tuple[int, int, int] = (240, 480, 960),
                 blocks: tuple[int, int, int] = (4, 8, 4), groups: int = 3, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
        channels, stages = 24, []
        for width, n in zip(widths, blocks):
            # the first block concatenates its input, so it produces only the missing channels
            stage = [Bottleneck(channels, width - channels, 2, groups)]
            stage += [Bottleneck(width, width, 1, groups) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))   # (B, 960, 4, 4) for 32×32 inputs
        return self.linear(self.pool(x).flatten(1))


register_model("shufflenetv1", lambda num_classes=100, **kw: ShuffleNetV1(num_classes, **kw), input_shape=(3, 32, 32),
               guided="layer2", description="ShuffleNet V1, 3 groups, for CIFAR (the benchmark's ShuffleV1)")
