"""Wide ResNets (Zagoruyko & Komodakis, 2016) for CIFAR, ``wrn_{depth}_{k}``, pre-activation blocks, as in the
common CIFAR-100 distillation benchmark (wrn_40_2 2,255,156 parameters at 100 classes, ...). The default
hint/guided layer is the middle block group, ``block2``."""

from __future__ import annotations

import torch
from torch import nn

from fitnets.models.registry import register_model


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut = None if in_planes == planes else nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        # With a projection the shortcut takes the pre-activated input, as in the reference implementation.
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    def __init__(self, depth: int, k: int, num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a Wide ResNet has depth 6n + 4, not {depth}")
        n = (depth - 4) // 6
        widths = (16 * k, 32 * k, 64 * k)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        planes, groups = 16, []
        for width, stride in zip(widths, (1, 2, 2)):
            groups.append(nn.Sequential(*[PreActBlock(planes if i == 0 else width, width, stride if i == 0 else 1)
                                          for i in range(n)]))
            planes = width
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.pool(self.relu(self.bn(x))).flatten(1))


for _depth, _k in ((16, 1), (16, 2), (40, 1), (40, 2)):
    register_model(f"wrn_{_depth}_{_k}",
                   lambda num_classes=100, _d=_depth, _k=_k, **kw: WideResNet(_d, _k, num_classes, **kw),
                   input_shape=(3, 32, 32), hint="block2", guided="block2",
                   description=f"Wide ResNet-{_depth}-{_k} for CIFAR (distillation benchmark)")
