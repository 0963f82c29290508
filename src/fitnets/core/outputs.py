"""Where the logits are in what a model's forward returns — one rule, used wherever fitnets reads logits (KD,
evaluation, agreement, export, the dry run's checks).

The rule, in order: a tensor is the logits; a mapping's ``"logits"`` entry; an object's ``.logits`` attribute
(the output classes of Hugging Face and similar libraries); the first tensor of a tuple or list (models that
return ``(logits, features)``). ``key`` overrides it: the mapping entry or attribute of that name
(config keys ``logits_key`` for the student, ``teacher_logits_key`` for the teacher).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fitnets.errors import FitNetsError


def describe_output(output: Any) -> str:
    """A short description of a forward's return value, for error messages."""
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, Mapping):
        return f"a {type(output).__name__} with keys {', '.join(map(repr, list(output)[:8]))}"
    if isinstance(output, (tuple, list)):
        return f"a {type(output).__name__} of {', '.join(type(v).__name__ for v in output[:8])}"
    fields = [k for k in vars(output) if not k.startswith("_")] if hasattr(output, "__dict__") else []
    return f"a {type(output).__name__}" + (f" with fields {', '.join(fields[:8])}" if fields else "")


def logits_of(output: Any, key: str | None = None) -> torch.Tensor:
    """The logits in ``output`` by the module's rule, or its ``key`` entry / attribute when ``key`` is given.

    Raises:
        FitNetsError: no logits by the rule (or no ``key``), naming what the forward returned.
    """
    if key is not None:
        found = output.get(key) if isinstance(output, Mapping) else getattr(output, key, None)
        if isinstance(found, torch.Tensor):
            return found
        raise FitNetsError(f"the model's output has no tensor {key!r} (logits_key): it returned "
                           f"{describe_output(output)}")
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        found = output.get("logits")
    elif isinstance(output, (tuple, list)):
        found = next((v for v in output if isinstance(v, torch.Tensor)), None)
    else:
        found = getattr(output, "logits", None)
    if isinstance(found, torch.Tensor):
        return found
    raise FitNetsError(f"cannot find the logits in the model's output: it returned {describe_output(output)} (the "
                       "rule: a tensor, a mapping's 'logits', an object's .logits, or a tuple's first tensor); name "
                       "them with logits_key (teacher_logits_key for the teacher)")
