"""The regressor that maps the student's guided layer onto the teacher's hint (FitNets §2.2).

Rule, for a guided map ``(C_g, H_g, W_g)`` and a hint ``(C_h, H_h, W_h)``:

* ``H_g ≥ H_h`` and ``W_g ≥ W_h``: a convolution without padding, kernel ``k_i = N_g,i − N_h,i + 1``, so its
  output has the hint's size (the paper's rule; a 1×1 convolution when the sizes are equal);
* ``H_g ≤ H_h`` and ``W_g ≤ W_h`` (a guided map spatially *smaller* than the hint, which the paper's code does
  not handle): a transposed convolution, stride 1, no padding, kernel ``N_h,i − N_g,i + 1`` — the mirror of
  the paper's rule, again with ``k1·k2·C_h·C_g`` weights;
* flat features ``(C_g,)`` and ``(C_h,)``: a linear map;
* sizes the paper's rule cannot join — one side larger and the other smaller, or so far apart that its kernel
  would be larger than half the larger map (the pair then compares places that are not the same place): the
  guided map is first resampled to the hint's grid (adaptive average pooling where it is larger, bilinear
  interpolation where it is smaller), then a 1×1 convolution maps the channels (a departure from the paper,
  whose pairs never need it: its kernels are 1×1 or 2×2);
* a flat and a spatial feature: no regressor is built and ``FitNetsError`` says why, rather than something
  silently wrong. (Token sequences are maps by then: ``fitnets.core.features``.)

The regressor ends in the same non-linearity as the hint layer's output (§2.2: "u_h and r must have the same
non-linearity"). For a maxout hint layer it is a maxout layer with the teacher's pieces, as in the authors'
code. The regressor is owned by the distillation (``FitNet``), never by the student, and is thrown away after
stage 1.
"""

from __future__ import annotations

import copy

from torch import nn

from fitnets.core.maxout import Maxout, MaxoutConv2d
from fitnets.errors import FitNetsError

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus, Maxout)
# Layers that commute with a monotone point-wise non-linearity or leave it intact: skipped when looking for
# the non-linearity that ends a block.
class Resample(nn.Module):
    """A map resampled to ``size``: adaptive average pooling in a dimension where it is larger, bilinear
    interpolation where it is smaller."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = (int(size[0]), int(size[1]))

    def forward(self, x):
        (h, w), (th, tw) = x.shape[-2:], self.size
        if h > th or w > tw:
            x = nn.functional.adaptive_avg_pool2d(x, (min(h, th), min(w, tw)))
        if x.shape[-2] < th or x.shape[-1] < tw:
            x = nn.functional.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}"


def needs_resampling(guided_hw: tuple[int, int], hint_hw: tuple[int, int]) -> bool:
    """Whether the paper's (transposed) convolution cannot join these map sizes (see the module's rule)."""
    (h_g, w_g), (h_h, w_h) = guided_hw, hint_hw
    if not ((h_g >= h_h and w_g >= w_h) or (h_g <= h_h and w_g <= w_h)):
        return True
    return abs(h_g - h_h) + 1 > max(h_g, h_h) / 2 or abs(w_g - w_h) + 1 > max(w_g, w_h) / 2


_TRANSPARENT = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d,
                nn.Identity, nn.Flatten)


def output_activation(layer: nn.Module) -> nn.Module | None:
    """The non-linearity that ends ``layer``'s output, or ``None`` (linear or unknown).

    Looks at the layer itself, then backwards through its children (skipping pooling, dropout and identity),
    so it finds the ReLU that ends a ``Sequential`` block and the maxout of a ``MaxoutConv2d``.
    """
    if isinstance(layer, _ACTIVATIONS):
        return layer
    if isinstance(layer, MaxoutConv2d):
        return layer.maxout
    for child in reversed(list(layer.children())):
        if not isinstance(child, _TRANSPARENT):
            return output_activation(child)
    return None


def hint_activation(model: nn.Module, path: str) -> nn.Module | None:
    """The non-linearity that ends the output of ``model``'s layer at ``path``. A pooling or dropout layer
    inside a ``Sequential`` passes its input's non-linearity through, so for ``path = "5"`` in
    ``Sequential(..., Conv, ReLU, MaxPool)`` it is the ReLU at ``"4"``."""
    modules = dict(model.named_modules())
    layer = modules[path]
    found = output_activation(layer)
    if found is not None or not isinstance(layer, _TRANSPARENT) or not path:
        return found
    parent_path, _, name = path.rpartition(".")
    parent = modules[parent_path]
    if not isinstance(parent, nn.Sequential):
        return None
    siblings = list(parent.named_children())
    position = [n for n, _ in siblings].index(name)
    for _, sibling in reversed(siblings[:position]):
        if not isinstance(sibling, _TRANSPARENT):
            return output_activation(sibling)
    return None


def _activation_module(activation: str | nn.Module | None) -> tuple[nn.Module | None, int]:
    """Resolve the regressor's activation: ``"none"`` is linear, a name is built, a module is copied.
    Returns the module and the channel multiplier (the pieces of a maxout)."""
    if activation in ("none", None):
        return None, 1
    if isinstance(activation, str):
        table = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
        if activation == "maxout" or (activation.startswith("maxout") and activation[6:].isdigit()):
            pieces = int(activation[6:] or 2)
            return Maxout(pieces), pieces
        if activation not in table:
            raise FitNetsError(f"unknown regressor activation {activation!r}; use auto, none, "
                               f"{', '.join(table)} or maxoutN")
        return table[activation](), 1
    activation = copy.deepcopy(activation)
    return activation, activation.pieces if isinstance(activation, Maxout) else 1


def build_regressor(guided_shape: tuple[int, ...], hint_shape: tuple[int, ...],
                    activation: str | nn.Module | None = None, batch_norm: bool = False) -> nn.Sequential:
    """Build the regressor from the guided layer's shape to the hint's (shapes without the batch dimension).

    Args:
        guided_shape: ``(C_g, H_g, W_g)`` or ``(C_g,)``.
        hint_shape: ``(C_h, H_h, W_h)`` or ``(C_h,)``.
        activation: the non-linearity that ends the regressor: ``None``/``"none"``, a name (``"relu"``,
            ``"maxout2"``, ...), or a module (copied; e.g. ``hint_activation(teacher, hint)``).
        batch_norm: put a batch norm between the map and the activation (the regressor of the common
            one-stage FitNet variant, conv + BN + ReLU; not in the paper).

    Returns:
        ``nn.Sequential(map, activation)`` whose output has ``hint_shape``.

    Raises:
        FitNetsError: when no regressor of the rule (module docstring) can join the two shapes.
    """
    guided_shape, hint_shape = tuple(guided_shape), tuple(hint_shape)
    act, pieces = _activation_module(activation)
    resample = None
    if len(guided_shape) == 1 and len(hint_shape) == 1:
        layer: nn.Module = nn.Linear(guided_shape[0], hint_shape[0] * pieces)
    elif len(guided_shape) == 3 and len(hint_shape) == 3:
        (c_g, h_g, w_g), (c_h, h_h, w_h) = guided_shape, hint_shape
        if needs_resampling((h_g, w_g), (h_h, w_h)):
            resample = Resample((h_h, w_h))
            layer = nn.Conv2d(c_g, c_h * pieces, 1)
        elif h_g >= h_h and w_g >= w_h:
            layer = nn.Conv2d(c_g, c_h * pieces, (h_g - h_h + 1, w_g - w_h + 1))
        else:
            layer = nn.ConvTranspose2d(c_g, c_h * pieces, (h_h - h_g + 1, w_h - w_g + 1))
    else:
        raise FitNetsError(f"no regressor joins guided {guided_shape} to hint {hint_shape}: both must be "
                           "feature maps (C, H, W) or both flat (C,); pick other layers (see `fitnets layers`)")
    modules: list[nn.Module] = [layer] if resample is None else [resample, layer]
    if batch_norm:
        norm = nn.BatchNorm2d if len(hint_shape) == 3 else nn.BatchNorm1d
        modules.append(norm(hint_shape[0] * pieces))  # the map's output channels
    modules += [act] if act is not None else []
    return nn.Sequential(*modules)


def describe_regressor(regressor: nn.Sequential) -> str:
    first = regressor[0]
    resample = first if isinstance(first, Resample) else None
    layer = regressor[1] if resample is not None else regressor[0]
    params = sum(p.numel() for p in regressor.parameters())
    kind = type(layer).__name__
    kernel = getattr(layer, "kernel_size", None)
    shape = f"kernel {tuple(kernel)}, " if kernel is not None else ""
    end = regressor[-1]
    last = end if end is not layer and not isinstance(end, (nn.BatchNorm1d, nn.BatchNorm2d)) else None
    act = type(last).__name__ if last is not None else "none"
    if isinstance(last, Maxout):
        act += f"({last.pieces} pieces)"
    bn = ", batch norm" if any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in regressor) else ""
    pre = f"Resample(to {resample.size[0]}×{resample.size[1]}) → " if resample is not None else ""
    return f"{pre}{kind}({shape}{params:,} parameters{bn}, activation {act})"

