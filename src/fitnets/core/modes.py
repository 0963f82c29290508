"""``eval_mode(*modules)``: run a block with modules in eval mode and put every submodule's own training flag
back afterwards, exceptions included (a bare ``.train(was_training)`` would reset submodules a user had
deliberately left in eval mode)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training
