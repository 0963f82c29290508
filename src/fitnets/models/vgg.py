"""VGG with batch norm for CIFAR (Simonyan & Zisserman, 2015), in the variant of the common CIFAR-100
distillation benchmark: five conv blocks, max-pools after the first three (and the fourth for 64×64 inputs),
global average pool, one linear classifier. vgg8 3,965,028 parameters at 100 classes, vgg13 9,462,180, ...
Each block ends in its ReLU (the benchmark applies it outside the block; the parameters are the same), so a
tap on ``block2`` gets the activated features. The default hint/guided layer is ``block2``."""

from __future__ import annotations

import torch
from torch import nn

from fitnets.models.registry import register_model

CONFIGS = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


class VGG(nn.Module):
    def __init__(self, config: tuple[tuple[int, ...], ...], num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        blocks, channels = [], in_channels
        for widths in config:
            layers: list[nn.Module] = []
            for width in widths:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                channels = width
            blocks.append(nn.Sequential(*layers))
        self.block0, self.block1, self.block2, self.block3, self.block4 = blocks
        self.pool = nn.MaxPool2d(2, 2)
        self.head_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2]
        x = self.pool(self.block0(x))
        x = self.pool(self.block1(x))
        x = self.pool(self.block2(x))
        x = self.block3(x)
        if size == 64:
            x = self.pool(x)
        x = self.block4(x)
        return self.classifier(self.head_pool(x).flatten(1))


for _name, _config in CONFIGS.items():
    register_model(_name, lambda num_classes=100, _c=_config, **kw: VGG(_c, num_classes, **kw),
                   input_shape=(3, 32, 32), hint="block2", guided="block2",
                   description=f"{_name.upper()} with batch norm for CIFAR (distillation benchmark)")
