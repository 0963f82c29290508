"""Features of every common kind, as the regressor sees them: a map ``(C, H, W)`` or a flat vector ``(C,)``.

A transformer block's output is a token sequence ``(N, C)``: ``k`` leading extra tokens (class, distillation,
register tokens) and then one token per image patch, row by row. Its grid comes from the input's layout:
``N − k = h·w`` with ``h / w`` the input's aspect ratio (224 × 224 with 16-pixel patches: 196 patches; a ViT's
197 tokens have ``k = 1``, DeiT's 198 have ``k = 2``). The smallest ``k`` (up to 16) that lays the rest out on
such a grid is taken, unless it is given. The extra tokens are left out — they summarise the image rather than
describe a place in it, and a CNN on the other side has nothing to match them with — and the patch tokens are
reshaped to a map ``(C, h, w)``, so that a ViT and a CNN are joined like two CNNs (FitNets §2.2's regressor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fitnets.errors import FitNetsError

MAX_EXTRA_TOKENS = 16


@dataclass(frozen=True)
class TokenLayout:
    """How a token sequence lies on the image: ``extra`` leading tokens, then a ``grid`` of patch tokens."""

    extra: int
    grid: tuple[int, int]

    def to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` tokens → the ``(B, C, h, w)`` map of their patch tokens."""
        b, _, c = tokens.shape
        return tokens[:, self.extra:].transpose(1, 2).reshape(b, c, *self.grid)

    def describe(self) -> str:
        return f"tokens: {self.extra} extra left out, {self.grid[0]}×{self.grid[1]} patches as a map"


def token_layout(tokens: int, image_hw: tuple[int, int], extra: int | None = None) -> TokenLayout:
    """The layout of ``tokens`` tokens for an input of ``image_hw`` pixels (``extra``: the number of leading
    extra tokens when known).

    Raises:
        FitNetsError: no ``k`` lays the tokens out on a grid of the input's aspect ratio.
    """
    height, width = image_hw
    for k in ([extra] if extra is not None else range(0, MAX_EXTRA_TOKENS + 1)):
        patches = tokens - k
        if patches <= 0:
            continue
        h = round(math.sqrt(patches * height / width))
        if h > 0 and patches % h == 0 and h * width == (patches // h) * height:
            return TokenLayout(k, (h, patches // h))
    given = f"with {extra} extra tokens " if extra is not None else ""
    raise FitNetsError(f"cannot lay {tokens} tokens {given}out on a patch grid of a {height}×{width} input; set "
                       "hint_stage.hint_extra_tokens / guided_extra_tokens to the number of leading non-patch tokens")
