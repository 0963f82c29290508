"""Feature taps for any ``nn.Module``: the outputs of layers named by module path, with the forward cut short.

A layer is named by the dotted path that ``model.named_modules()`` prints (``"layer2.1.conv"``). When the layer
returns a tuple, list or dict, the rule is: a single tensor inside it is taken as is; with several, the path
must say which one with an index or key in brackets (``"encoder[0]"``, ``"block[hidden]"``), or the tap
fails with a message listing the choices. A module called more than once in a forward is tapped at its first
call.

The cut: a forward hook on each tapped module stores its output; once every requested output is stored the
hook raises an internal exception that unwinds the rest of the forward, so nothing after the deepest tapped
layer runs — for any model, with no list of modules written by hand (FitNets §2.2: the teacher is needed
only up to its hint layer, the student up to its guided layer).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fitnets.errors import FitNetsError, closest

_PATH = re.compile(r"^(?P<module>[^\[\]]*)(\[(?P<key>[^\[\]]+)\])?$")


@dataclass(frozen=True)
class LayerRef:
    """A parsed layer path: the module's dotted path and an optional index or key into its output."""

    module: str
    key: int | str | None = None

    @classmethod
    def parse(cls, path: str) -> LayerRef:
        match = _PATH.match(path.strip())
        if not match:
            raise FitNetsError(f"bad layer path {path!r}: expected 'a.b.c' or 'a.b.c[0]' or 'a.b.c[name]'")
        key = match["key"]
        if key is not None:
            key = key.strip("'\"")
            key = int(key) if key.lstrip("-").isdigit() else key
        return cls(match["module"], key)

    def __str__(self) -> str:
        return self.module + (f"[{self.key}]" if self.key is not None else "")


def find_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at ``path``; a clear error naming the closest valid paths when there is none."""
    modules = dict(model.named_modules())
    if path not in modules:
        names = [n for n in modules if n]
        raise FitNetsError(f"no layer {path!r} in {type(model).__name__}.{closest(path, names)} "
                           "Run `fitnets layers MODEL` to list every layer with its output shape.")
    return modules[path]


def select(output, ref: LayerRef) -> torch.Tensor:
    """Apply the tuple/list/dict rule (module docstring) to a layer's output."""
    if isinstance(output, torch.Tensor):
        if ref.key is not None:
            raise FitNetsError(f"layer {ref.module!r} returns a single tensor; drop the [{ref.key}] from its path")
        return output
    items: dict[int | str, torch.Tensor]
    if isinstance(output, dict):
        items = {k: v for k, v in output.items() if isinstance(v, torch.Tensor)}
    elif isinstance(output, (tuple, list)):
        items = {i: v for i, v in enumerate(output) if isinstance(v, torch.Tensor)}
    else:
        raise FitNetsError(f"layer {ref.module!r} returns a {type(output).__name__}, not a tensor")
    if ref.key is not None:
        if ref.key not in items:
            raise FitNetsError(f"layer {ref.module!r} has no tensor output [{ref.key}]; "
                               f"choices: {', '.join(f'[{k}]' for k in items)}")
        return items[ref.key]
    if len(items) == 1:
        return next(iter(items.values()))
    choices = ", ".join(f"'{ref.module}[{k}]' {tuple(v.shape)}" for k, v in items.items())
    raise FitNetsError(f"layer {ref.module!r} returns a {type(output).__name__} of {len(items)} tensors; "
                       f"say which in the path: {choices}")


class _Stop(Exception):
    """Unwinds the forward once every tapped output is in hand."""


def _call(model: nn.Module, x):
    return model(*x) if isinstance(x, tuple) else model(x)


@contextmanager
def dry_run(model: nn.Module, x) -> Iterator[None]:
    """A block that runs ``model`` on an example input to find shapes: a ``RuntimeError`` inside it (the
    commonest dry-run mistake is an input the model cannot take) becomes a one-line ``FitNetsError`` naming the
    input's shape (or the dtypes, when the model's weights and the input differ), with the original chained.
    Outside a dry run (training, cache builds) errors pass through untouched, so a real failure keeps its own
    message."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:  # (torch.OutOfMemoryError only exists from 2.5)
        raise
    except RuntimeError as err:
        # A model in another dtype than its input fails in its first layer ("Input type (float) and bias type
        # (double) should be the same"): name the dtypes, not the shape.
        inputs = x if isinstance(x, tuple) else (x,)
        weights = {p.dtype for p in model.parameters() if p.is_floating_point()}
        given = {t.dtype for t in inputs if isinstance(t, torch.Tensor) and t.is_floating_point()}
        if weights and given and not given & weights and "type" in str(err).lower():
            weight, given_dtype = (str(next(iter(d))).removeprefix("torch.") for d in (weights, given))
            raise FitNetsError(f"{type(model).__name__} has {weight} weights and cannot run on a {given_dtype} "
                               "input: convert the model with model.float() (fitnets feeds float32 batches; "
                               "--student-dtype / --teacher-dtype for bfloat16)") from err
        shape = [tuple(t.shape) for t in x] if isinstance(x, tuple) else tuple(x.shape)
        raise FitNetsError(f"{type(model).__name__} cannot run on an input of shape {shape}: "
                           f"{str(err).splitlines()[0]}") from err


def _run(model: nn.Module, x, paths: Sequence[str], stop: bool):
    """The forward with hooks on ``paths``: ``(output or None when cut short, [tapped outputs])``."""
    refs = [LayerRef.parse(p) for p in paths]
    found: dict[int, torch.Tensor] = {}
    handles = []

    def make_hook(i: int, ref: LayerRef):
        def hook(_module, _inputs, output):
            if i in found:
                return
            value = select(output, ref)
            if stop and len(found) + 1 == len(refs):
                found[i] = value
                raise _Stop
            # The forward goes on: a later in-place op (``ReLU(inplace=True)`` after a batch norm) would
            # change the stored output, so keep a copy. The usual cut tap (the last one) needs none.
            found[i] = value.clone() if isinstance(value, torch.Tensor) else value
        return hook

    for i, ref in enumerate(refs):
        handles.append(find_module(model, ref.module).register_forward_hook(make_hook(i, ref)))
    output = None
    try:
        output = _call(model, x)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [str(refs[i]) for i in range(len(refs)) if i not in found]
    if missing:
        raise FitNetsError(f"layer(s) {', '.join(missing)} never ran in {type(model).__name__}'s forward")
    return output, [found[i] for i in range(len(refs))]


def tap(model: nn.Module, x, paths: Sequence[str], stop: bool = True) -> list[torch.Tensor]:
    """Run ``model`` on ``x`` and return the outputs of the layers at ``paths`` (in that order).

    Args:
        model: any module.
        x: its input (a tensor, or a tuple of positional arguments).
        paths: layer paths (see the module docstring).
        stop: cut the forward short after the last tapped layer has run.

    Raises:
        FitNetsError: an unknown path, an ambiguous tuple output, or a layer that never ran.
    """
    return _run(model, x, paths, stop)[1]


def forward_with_taps(model: nn.Module, x, paths: Sequence[str]) -> tuple[Any, list[torch.Tensor]]:
    """One full forward returning the model's output (whatever its forward returns) and the outputs of the
    layers at ``paths``."""
    return _run(model, x, paths, stop=False)


def describe(output) -> str:
    """A short text for a layer's output: ``(16, 4, 4)`` for a tensor (batch dim dropped), nested otherwise."""
    if isinstance(output, torch.Tensor):
        return str(tuple(output.shape[1:]))
    if isinstance(output, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in output.items()) + "}"
    if isinstance(output, (tuple, list)):
        return "[" + ", ".join(f"[{i}] {describe(v)}" for i, v in enumerate(output)) + "]"
    return type(output).__name__


def trace(model: nn.Module, x, depth: int | None = None) -> list[tuple[str, str, str]]:
    """Every module that runs in a forward of ``x``, in execution order: ``(path, type name, output)``; with
    ``depth``, only those at most ``depth`` levels below the model (``layer2`` is one level down, ``layer2.1.conv1``
    three), so that a model of hundreds of layers can be read stage by stage."""
    seen: dict[str, tuple[str, str]] = {}
    handles = []
    for name, module in model.named_modules():
        if not name or (depth is not None and name.count(".") >= depth):
            continue

        def hook(mod, _inputs, output, name=name):
            seen.setdefault(name, (type(mod).__name__, describe(output)))
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad(), dry_run(model, x):
            _call(model, x)
    finally:
        for handle in handles:
            handle.remove()
    return [(name, kind, shape) for name, (kind, shape) in seen.items()]
