"""MobileNetV2 (Sandler et al., 2018) as the CIFAR-100 distillation benchmark uses it as a student
(``mobile_half`` in RepDistiller: expansion 6, width 0.5, a stride-2 stem even on 32×32 inputs, a 1×1 conv to
1280 channels, average pool, linear). Architecture facts from the benchmark's ``models/mobilenetv2.py``; the
parameter count follows from them (tested). Default guided layer: ``blocks.2`` (8×8), the benchmark's
middle feature."""

from __future__ import annotations

import torch
from torch import nn

from fitnets.models.registry import register_model

# (expansion, output channels, blocks, first stride) of each stage, before the width multiplier
STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class InvertedResidual(nn.Module):
    """1×1 expand, 3×3 depthwise, 1×1 linear projection; a residual connection when shapes allow."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int):
        super().__init__()
        hidden = c_in * expansion
        self.residual = stride == 1 and c_in == c_out
        self.conv = nn.Sequential(*conv_bn_relu(c_in, hidden, 1), *conv_bn_relu(hidden, hidden, 3, stride, hidden),
                                  nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 100, width: float = 0.5, expansion: int = 6, in_channels: int = 3):
        super().__init__()
        channels = int(32 * width)
        self.conv1 = nn.Sequential(*conv_bn_relu(in_channels, channels, 3, 2))
        stages = []
        for t, c, n, s in STAGES:
            out = int(c * width)
            stage = []
            for i in range(n):
                stage.append(InvertedResidual(channels, out, s if i == 0 else 1, expansion if t != 1 else 1))
                channels = out
            stages.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*stages)
        last = int(1280 * width) if width > 1.0 else 1280
        self.conv2 = nn.Sequential(*conv_bn_relu(channels, last, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.blocks(self.conv1(x)))
        return self.classifier(self.pool(x).flatten(1))


register_model("mobilenetv2", lambda num_classes=100, **kw: MobileNetV2(num_classes, **kw), input_shape=(3, 32, 32),
               guided="blocks.2", description="MobileNetV2, width 0.5 (the benchmark's mobile_half)")
