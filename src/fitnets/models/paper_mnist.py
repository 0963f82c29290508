"""The paper's MNIST networks (FitNets §4.2, Table 4; layer specs in §4.2 and the authors' code).

Paper convention (weights only, every maxout layer counted with 2 pieces): teacher 360,816, FitNet 29,944.
The authors' code gives the teacher's third layer and the FitNet's last two layers 4 pieces; we follow the
code by default (``pieces_last=4``); ``pieces_last=2`` gives the networks exactly as the paper counts them.
"""

from __future__ import annotations

import torch
from torch import nn

from fitnets.core.maxout import MaxoutConv2d
from fitnets.models.registry import register_model


class PaperMnistTeacher(nn.Module):
    """Maxout teacher: 8×8 48/2 → pool 4/2 → 8×8 48/2 pad 3 → pool 4/2 (hint, 4×4×48) → 5×5 24/4 pad 3 →
    pool 2/2 → softmax. ``dropout`` is applied to each layer's input, as in the maxout paper's training."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, pieces_last: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        self.conv1 = MaxoutConv2d(in_channels, 48, 8, 2, padding=0, pool=(4, 2), dropout=dropout / 2)
        self.conv2 = MaxoutConv2d(48, 48, 8, 2, padding=3, pool=(4, 2), dropout=dropout)
        self.conv3 = MaxoutConv2d(48, 24, 5, pieces_last, padding=3, pool=(2, 2), dropout=dropout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(24 * 3 * 3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))  # (B, 24, 3, 3)
        return self.classifier(self.dropout(x.flatten(1)))


class PaperMnistFitNet(nn.Module):
    """The 6-layer maxout FitNet: 5×5 16 → 3×3 16, pool 4/2 → 5×5 16 pad 3 → 3×3 16, pool 4/2
    (guided, 4×4×16) → 3×3 12 pad 3 → 3×3 12, pool 2/2 → softmax."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, pieces_last: int = 4):
        super().__init__()
        self.conv1 = MaxoutConv2d(in_channels, 16, 5, 2)                      # 24×24
        self.conv2 = MaxoutConv2d(16, 16, 3, 2, pool=(4, 2))                  # 22×22 -> 10×10
        self.conv3 = MaxoutConv2d(16, 16, 5, 2, padding=3)                    # 12×12
        self.conv4 = MaxoutConv2d(16, 16, 3, 2, pool=(4, 2))                  # 10×10 -> 4×4
        self.conv5 = MaxoutConv2d(16, 12, 3, pieces_last, padding=3)          # 8×8
        self.conv6 = MaxoutConv2d(12, 12, 3, pieces_last, pool=(2, 2))        # 6×6 -> 3×3
        self.classifier = nn.Linear(12 * 3 * 3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.conv6):
            x = conv(x)
        return self.classifier(x.flatten(1))  # (B, 12·3·3) -> (B, classes)


register_model(
    "paper-mnist-teacher", PaperMnistTeacher, input_shape=(1, 28, 28), hint="conv2",
    pretrained="paper-mnist-teacher.fashion-mnist.safetensors", paper_kwargs={"pieces_last": 2},
    description="The paper's MNIST maxout teacher (~361K weights, 3 maxout convs).",
)
register_model(
    "paper-mnist-fitnet", PaperMnistFitNet, input_shape=(1, 28, 28), guided="conv4", paper_kwargs={"pieces_last": 2},
    description="The paper's 6-layer maxout MNIST FitNet (~30K weights); guided layer 4.",
)
