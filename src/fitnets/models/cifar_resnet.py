"""CIFAR ResNets (He et al., 2016, §4.2) in the variant of the common CIFAR-100 distillation benchmark
(RepDistiller, Tian et al., ICLR 2020): 3×3 stem, three stages of basic blocks, 1×1-conv shortcuts where the
shape changes, 8×8 average pool. ``resnet{d}`` has widths 16/16/32/64, ``resnet{d}x4`` 32/64/128/256.

Parameter counts at 100 classes match the benchmark's (resnet20 278,324; resnet32x4 7,433,860; ...).
The default guided/hint layer is the middle stage, ``layer2``, whose block ends in a ReLU.
"""

from __future__ import annotations

import torch
from torch import nn

from fitnets.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, widths: tuple[int, int, int, int] = (16, 16, 32, 64), num_classes: int = 100,
                 in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2, not {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        planes = widths[0]
        stages = []
        for width, stride in zip(widths[1:], (1, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(planes, width, stride if i == 0 else 1))
                planes = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))   # (B, C, 8, 8) for 32×32 inputs
        return self.fc(self.pool(x).flatten(1))


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    register_model(name, lambda num_classes=100, **kw: CifarResNet(depth, widths, num_classes, **kw),
                   input_shape=(3, 32, 32), hint="layer2", guided="layer2",
                   description=f"CIFAR ResNet-{depth}, widths {'/'.join(map(str, widths))} (distillation benchmark)")


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, (16, 16, 32, 64))
for _depth in (8, 32):
    _register(f"resnet{_depth}x4", _depth, (32, 64, 128, 256))
