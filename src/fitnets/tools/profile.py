"""Model size and cost: parameters and multiply-accumulates (MACs) per example, measured by a forward pass."""

from __future__ import annotations

import torch
from torch import nn

from fitnets.core.modes import eval_mode


def count_parameters(model: nn.Module, weights_only: bool = False) -> int:
    """All parameters, or (``weights_only``, the paper's convention) those named ``weight`` of conv and
    linear layers — no biases, no normalisation parameters."""
    if not weights_only:
        return sum(p.numel() for p in model.parameters())
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)))


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one example's forward through every conv and linear layer (the cost that
    dominates; pooling, normalisation and activations are not counted), found with forward hooks."""
    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        per_output = module.weight[0].numel()  # (C_in / groups) · kh · kw
        total += output.numel() // output.shape[0] * per_output

    def transposed_hook(module, inputs, output):
        nonlocal total
        x = inputs[0]
        total += x.numel() // x.shape[0] * module.weight[0].numel()  # each input element hits C_out/groups·kh·kw

    def linear_hook(module, inputs, output):
        nonlocal total
        total += output.numel() // output.shape[0] * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(transposed_hook))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with eval_mode(model):
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return total
