"""A small vision transformer for 28×28 and 32×32 images, in the usual layout (patch embedding, a class token,
learned positions, pre-norm blocks, the class token's head), for heterogeneous pairs with the CNNs: its blocks
output token sequences ``(B, 1 + patches, dim)``, which FitNets joins to CNN maps (``fitnets.core.features``).

``vit-fmnist``: patch 4 on 28×28 (7×7 patches), 6 blocks of width 64 (a student of ~0.3M parameters);
``vit-fmnist-wide``: width 128 (a teacher of ~1.2M). ``vit-cifar``: patch 4 on 32×32, width 96.
"""

from __future__ import annotations

import torch
from torch import nn

from fitnets.models.registry import register_model


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, image_size: int = 28, patch: int = 4, channels: int = 1, dim: int = 64, depth: int = 6,
                 heads: int = 4, num_classes: int = 10):
        super().__init__()
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        patches = (image_size // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + patches, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(tokens))[:, 0])


register_model("vit-fmnist", lambda num_classes=10, **kw: ViT(num_classes=num_classes, **kw), input_shape=(1, 28, 28),
               hint="blocks.2", guided="blocks.2",
               description="small ViT, patch 4 on 28×28, 6 blocks of width 64, class token (heterogeneous pairs)")
register_model("vit-fmnist-wide", lambda num_classes=10, **kw: ViT(num_classes=num_classes, dim=128, **kw),
               input_shape=(1, 28, 28), hint="blocks.2", guided="blocks.2",
               description="ViT, patch 4 on 28×28, 6 blocks of width 128, class token (a ViT teacher)")
register_model("vit-cifar", lambda num_classes=100, **kw: ViT(32, 4, 3, 96, 6, 4, num_classes, **kw),
               input_shape=(3, 32, 32), hint="blocks.2", guided="blocks.2",
               description="small ViT, patch 4 on 32×32, 6 blocks of width 96, class token")
