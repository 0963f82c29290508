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


def layer_macs(module: nn.Module, inputs: tuple, output) -> int:
    """Multiply-accumulates of one example through ``module``, called as a forward hook would be: a conv, a
    transposed conv, a linear layer, or multi-head attention's input and output projections (its forward uses
    the output projection's weight without calling that module); 0 for every other module (pooling,
    normalisation, activations, containers — and attention's score products, which are not counted)."""
    if isinstance(module, nn.ConvTranspose2d):
        x = inputs[0]
        return x.numel() // x.shape[0] * module.weight[0].numel()  # each input element hits C_out/groups·kh·kw
    if isinstance(module, nn.Conv2d):
        return output.numel() // output.shape[0] * module.weight[0].numel()  # (C_in / groups) · kh · kw each
    if isinstance(module, nn.Linear):
        return output.numel() // output.shape[0] * module.in_features
    if isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
        out = output[0]
        tokens = out.numel() // out.shape[0] // module.embed_dim
        return tokens * (module.in_proj_weight.numel() + module.out_proj.weight.numel())
    return 0


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one example's forward through every conv and linear layer and attention
    projection (the cost that dominates; see ``layer_macs``), found with forward hooks."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += layer_macs(module, inputs, output)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.MultiheadAttention))]
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    x = torch.zeros(1, *input_shape, device=weight.device if weight is not None else None,
                    dtype=weight.dtype if weight is not None else None)  # where and in what the model computes
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total
