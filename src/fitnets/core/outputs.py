"""Where the logits are in what a model's forward returns — one rule, used wherever fitnets reads logits (KD,
evaluation, agreement, export, the dry run's checks).

The rule, in order: a tensor is the logits; a mapping's ``"logits"`` entry; an object's ``.logits`` attribute
(the output classes of Hugging Face and similar libraries); the first tensor of a tuple or list (models that
return ``(logits, features)``). ``key`` overrides it: the mapping entry or attribute of that name, or the index
in a tuple or list (``1`` or ``"1"``: models that return ``(features, logits)``) — config keys ``logits_key`` for
the student, ``teacher_logits_key`` for the teacher. The logits taken must be ``(batch, classes)``: a feature map
taken by the tuple rule is refused, naming the element, rather than read as a wrong number of classes.
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
        items = [f"[{i}] {tuple(v.shape)}" if isinstance(v, torch.Tensor) else f"[{i}] {type(v).__name__}"
                 for i, v in enumerate(output[:8])]
        tensors = sum(isinstance(v, torch.Tensor) for v in output)
        return f"a {type(output).__name__} of {tensors} tensors: {', '.join(items)}"
    fields = [k for k in vars(output) if not k.startswith("_")] if hasattr(output, "__dict__") else []
    return f"a {type(output).__name__}" + (f" with fields {', '.join(fields[:8])}" if fields else "")


def _index(key: str | int) -> int | None:
    """``key`` as a position in a tuple output (``1``, ``"1"``, ``"[1]"``), else ``None``."""
    if isinstance(key, int):
        return key
    text = key.strip().removeprefix("[").removesuffix("]")
    return int(text) if text.lstrip("-").isdigit() else None


def _batch_of_classes(found: torch.Tensor, output: Any, taken: str) -> torch.Tensor:
    """``found`` when it is ``(batch, classes)``; else a one-line error saying what was taken, and, for a tuple,
    which other element could be the logits."""
    if found.dim() == 2:
        return found
    fix = "return (batch, classes) logits from the forward"
    if isinstance(output, (tuple, list)):
        others = [i for i, v in enumerate(output) if isinstance(v, torch.Tensor) and v.dim() == 2]
        fix = f"set logits_key={others[0] if others else 'N'} (the index of the logits in the {type(output).__name__})"
    raise FitNetsError(f"the model returned {describe_output(output)}; fitnets took {taken} as the logits, but it "
                       f"has shape {tuple(found.shape)}, not (batch, classes): {fix}")


def logits_of(output: Any, key: str | int | None = None) -> torch.Tensor:
    """The logits in ``output`` by the module's rule, or its ``key`` entry / attribute / tuple index when ``key``
    is given.

    Raises:
        FitNetsError: no logits by the rule (or no ``key``), or logits that are not ``(batch, classes)``, naming
            what the forward returned.
    """
    if key is not None:
        index = _index(key) if isinstance(output, (tuple, list)) else None
        if index is not None:
            found = output[index] if -len(output) <= index < len(output) else None
        elif isinstance(output, Mapping):
            found = output.get(key)
        else:
            found = getattr(output, str(key), None)
        if isinstance(found, torch.Tensor):
            return _batch_of_classes(found, output, f"[{index}]" if index is not None else repr(key))
        name = f"[{index}]" if index is not None else repr(key)
        raise FitNetsError(f"the model's output has no tensor {name} (logits_key): it returned "
                           f"{describe_output(output)}")
    if isinstance(output, torch.Tensor):
        return _batch_of_classes(output, output, "its output")
    taken = "its 'logits'"
    if isinstance(output, Mapping):
        found = output.get("logits")
    elif isinstance(output, (tuple, list)):
        index, found = next(((i, v) for i, v in enumerate(output) if isinstance(v, torch.Tensor)), (None, None))
        taken = f"[{index}] (a tuple's first tensor, by the rule)"
    else:
        found = getattr(output, "logits", None)
    if isinstance(found, torch.Tensor):
        return _batch_of_classes(found, output, taken)
    raise FitNetsError(f"cannot find the logits in the model's output: it returned {describe_output(output)} (the "
                       "rule: a tensor, a mapping's 'logits', an object's .logits, or a tuple's first tensor); name "
                       "them with logits_key (teacher_logits_key for the teacher)")


def logits_origin(output: Any, key: str | int | None = None) -> str:
    """Where ``logits_of`` took the logits from, for a message about their number (``""`` for a plain tensor):
    e.g. ``" ([0] of the tuple its forward returns: [0] (2, 64), [1] (2, 10); choose with logits_key)"``."""
    if isinstance(output, torch.Tensor):
        return ""
    if isinstance(output, (tuple, list)):
        if key is None:
            key = next(i for i, v in enumerate(output) if isinstance(v, torch.Tensor))
        return (f" ([{_index(key)}] of the {type(output).__name__} its forward returns: "
                f"{describe_output(output).split(': ', 1)[-1]}; choose another with logits_key=INDEX)")
    return f" (its {key or 'logits'!r} {'entry' if isinstance(output, Mapping) else 'attribute'})"
