"""Features of every common kind, as the regressor sees them: a map ``(C, H, W)`` or a flat vector ``(C,)``.

A transformer block's output is a token sequence ``(N, C)``: ``k`` leading extra tokens (class, distillation,
register tokens) and then one token per image patch, row by row. The grid is the model's own when a layer before
the tokens outputs a map of ``C`` channels and ``h·w = N − k`` cells (a patch embedding's convolution: 224 × 224
with 16-pixel patches makes 14 × 14, so a ViT's 197 tokens have ``k = 1``, DeiT's 198 have ``k = 2``), and a
given ``k`` that contradicts it is refused: a wrong count can leave a square number of tokens that reshapes
without error into scrambled features. With no such map (patches embedded by a ``Linear``), the grid must tile
the input in whole patches at its aspect ratio; when more than one ``k`` (up to 16) does, ``k`` must be given.
The extra tokens are left out — they summarise the image rather than describe a place in it, and a CNN on the
other side has nothing to match them with — and the patch tokens are reshaped to a map ``(C, h, w)``, so that a
ViT and a CNN are joined like two CNNs (FitNets §2.2's regressor).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

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


@contextmanager
def recorded_maps(model: nn.Module) -> Iterator[list[tuple[str, tuple[int, ...]]]]:
    """A block in which every map ``(B, C, H, W)`` a submodule of ``model`` outputs is recorded, in order, as
    ``(path, (C, H, W))``: what ``patch_grid`` reads to find the grid a token sequence was cut from."""
    maps: list[tuple[str, tuple[int, ...]]] = []

    def hook(_module, _inputs, output, path):
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            maps.append((path, tuple(output.shape[1:])))

    handles = [module.register_forward_hook(lambda m, i, o, p=path: hook(m, i, o, p))
               for path, module in model.named_modules() if path]
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


def patch_grid(maps: list[tuple[str, tuple[int, ...]]], tokens: tuple[int, int]
               ) -> tuple[str, tuple[int, int]] | None:
    """The grid that ``tokens`` (``(N, C)``) were cut from: the last of ``maps`` (``recorded_maps``, those
    computed before the tokens) with ``C`` channels and ``N − k`` cells, ``0 ≤ k ≤ MAX_EXTRA_TOKENS``; ``None``
    when there is none."""
    count, channels = tokens
    for path, (c, h, w) in reversed(maps):
        if c == channels and 0 <= count - h * w <= MAX_EXTRA_TOKENS:
            return path, (h, w)
    return None


def token_layout(tokens: int, image_hw: tuple[int, int], extra: int | None = None,
                 grid: tuple[str, tuple[int, int]] | None = None, setting: str = "extra_tokens") -> TokenLayout:
    """The layout of ``tokens`` tokens for an input of ``image_hw`` pixels.

    Args:
        extra: the number of leading extra tokens when the user gave it.
        grid: ``(path, (h, w))``, the patch grid the model made (``patch_grid``), when known.
        setting: the name of the option that sets ``extra``, for the messages.

    Raises:
        FitNetsError: ``extra`` contradicts the model's grid; no ``k`` lays the tokens out on a grid of the
            input's aspect ratio; or, with neither ``extra`` nor ``grid``, more than one does.
    """
    height, width = image_hw
    fix = f"set {setting} (hint_stage.{setting} in a config) to the number of leading non-patch tokens"
    if grid is not None:
        path, (h, w) = grid
        k = tokens - h * w
        if extra is not None and extra != k:
            raise FitNetsError(f"{setting}={extra} leaves {tokens - extra} of {tokens} tokens as patches, but "
                               f"{path} makes a {h}×{w} patch grid ({h * w} patches, {k} extra): "
                               f"set {setting} to {k}, or leave it unset")
        return TokenLayout(k, (h, w))
    fits = []
    for k in ([extra] if extra is not None else range(0, MAX_EXTRA_TOKENS + 1)):
        patches = tokens - k
        if patches <= 0:
            continue
        h = round(math.sqrt(patches * height / width))
        if h > 0 and patches % h == 0 and h * width == (patches // h) * height:
            w = patches // h
            if extra is not None or (height % h == 0 and width % w == 0):  # a guess must tile in whole patches
                fits.append(TokenLayout(k, (h, w)))
    if len(fits) == 1:
        return fits[0]
    if len(fits) > 1:
        choices = ", ".join(f"{f.extra} ({f.grid[0]}×{f.grid[1]})" for f in fits)
        raise FitNetsError(f"{tokens} tokens on a {height}×{width} input could hold this many extra tokens: "
                           f"{choices}, and no layer before them outputs a patch map of their width; {fix}")
    given = f"with {extra} extra tokens " if extra is not None else ""
    raise FitNetsError(f"cannot lay {tokens} tokens {given}out on a patch grid of a {height}×{width} input; {fix}")
