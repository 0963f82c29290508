"""Batch-norm folding for the frozen teacher.

In eval mode a batch-norm layer is a fixed per-channel affine map, ``y = s·x + t`` with ``s = γ/√(σ² + ε)`` and
``t = β − s·μ``; when it directly follows a convolution it can be folded into that convolution's weights and
bias, and the forward skips one full pass over the feature map. The teacher is never trained, so this is
safe for it (never for the student). Module paths do not change: the folded batch norm is replaced by
``nn.Identity`` at the same path, so a hint tapped there still sees the normalised map; a hint tapped at the
convolution itself gets its original, unnormalised output back through ``unfold_output``.

Pairs are found on a ``torch.fx`` trace: a convolution whose only use is a batch norm, each called once, and
neither's weights read directly elsewhere in the forward. A model that fx cannot trace is left as it is:
folding is an optimisation, never a requirement.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

_NORMS = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}
# The conv and batch-norm types of the pairs above, for isinstance checks.
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class Folded:
    """The batch norm's affine map folded into a convolution, kept to recover the convolution's own output."""

    scale: torch.Tensor  # (C,) float32
    shift: torch.Tensor  # (C,) float32

    def unfold_output(self, y: torch.Tensor) -> torch.Tensor:
        """The convolution's output before folding, from its output after (channels on dim 1)."""
        view = (1, -1) + (1,) * (y.dim() - 2)
        return (y - self.shift.to(y.device).view(view)) / self.scale.to(y.device).view(view)


def _pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv path, batch-norm path) for each convolution whose only use is a batch norm, both called once."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # any model fx cannot trace (data-dependent control flow, ...): no folding
        return []
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    attributes = []  # parameters and buffers the forward reads directly (``self.bn.weight``)
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
        elif node.op == "get_attr":
            attributes.append(node.target)
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or type(modules.get(node.target)) not in _NORMS:
            continue
        conv = modules[node.target]
        if len(node.users) != 1:
            continue
        (user,) = node.users
        norm = modules.get(user.target) if user.op == "call_module" else None
        if (isinstance(norm, _BN) and type(norm) is _NORMS[type(conv)]
                and user.args[:1] == (node,) and len(user.args) == 1
                and calls[node.target] == 1 and calls[user.target] == 1 and norm.running_mean is not None
                and norm.num_features == conv.out_channels
                and not any(a.startswith((node.target + ".", user.target + ".")) for a in attributes)):
            pairs.append((node.target, user.target))
    return pairs


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, dict[str, Folded]]:
    """A copy of ``model`` (eval mode) with every conv → batch-norm pair folded, and the folds by conv path.

    ``model`` itself is not changed; when nothing can be folded it is returned as is, with no copy made.
    A pair whose scale has a zero or non-finite entry is skipped (its conv output could not be recovered).
    """
    model.eval()
    pairs = _pairs(model)
    if not pairs:
        return model, {}
    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    folds = {}
    for conv_path, norm_path in pairs:
        conv, norm = modules[conv_path], modules[norm_path]
        assert isinstance(conv, _CONV) and isinstance(norm, _BN)  # as _pairs chose them
        assert norm.running_mean is not None and norm.running_var is not None
        scale = torch.rsqrt(norm.running_var.float() + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight.float()
        shift = -norm.running_mean.float() * scale
        if norm.bias is not None:
            shift = shift + norm.bias.float()
        if not torch.isfinite(scale).all() or (scale == 0).any():
            continue
        weight = conv.weight.float() * scale.view((-1,) + (1,) * (conv.weight.dim() - 1))
        bias = shift if conv.bias is None else conv.bias.float() * scale + shift
        conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
        parent, _, name = norm_path.rpartition(".")
        setattr(modules[parent] if parent else model, name, nn.Identity())
        folds[conv_path] = Folded(scale, shift)
    return model, folds
