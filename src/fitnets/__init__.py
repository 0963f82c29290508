"""fitnets: FitNets (Romero et al., ICLR 2015) — hint-based knowledge distillation for any PyTorch model.

The package is lazy (PEP 562, as Hugging Face transformers is): ``import fitnets`` loads nothing but this file,
and each public name imports its module on first use, so that ``import fitnets.core.losses`` loads the core alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it (dynamic = ["version"])

# Each public name → the module that defines it.
_EXPORTS = {
    "FitNetsError": "fitnets.errors",
    "FitNet": "fitnets.core.fitnet",
    "hint_loss": "fitnets.core.losses", "kd_loss": "fitnets.core.losses", "kd_weight_at": "fitnets.core.losses",
    "soft_cross_entropy": "fitnets.core.losses",
    "create_model": "fitnets.models", "list_models": "fitnets.models", "model_spec": "fitnets.models",
    "register_model": "fitnets.models",
    "build_regressor": "fitnets.core.regressor",
    "tap": "fitnets.core.taps", "trace": "fitnets.core.taps",
    "FrozenTeacher": "fitnets.core.teacher",
    "RunConfig": "fitnets.training.config", "load_config": "fitnets.training.config",
    "Run": "fitnets.training.run",
    "distill": "fitnets.api", "train": "fitnets.api",
    "evaluate": "fitnets.trained", "export": "fitnets.trained",
    "frontier": "fitnets.tools.frontier.api",
    "load_weights": "fitnets.checkpoint",
}

__all__ = ["FitNet", "FitNetsError", "FrozenTeacher", "Run", "RunConfig", "build_regressor", "create_model", "distill",
           "evaluate", "export", "frontier", "hint_loss", "kd_loss", "kd_weight_at", "list_models", "load_config",
           "load_weights", "model_spec", "register_model", "soft_cross_entropy", "tap", "trace",
           "train"]  # = _EXPORTS' names (tests/test_layout.py)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below imports on first use
    from fitnets.api import distill, train
    from fitnets.checkpoint import load_weights
    from fitnets.core.fitnet import FitNet
    from fitnets.core.losses import hint_loss, kd_loss, kd_weight_at, soft_cross_entropy
    from fitnets.core.regressor import build_regressor
    from fitnets.core.taps import tap, trace
    from fitnets.core.teacher import FrozenTeacher
    from fitnets.errors import FitNetsError
    from fitnets.models import create_model, list_models, model_spec, register_model
    from fitnets.tools.frontier.api import frontier
    from fitnets.trained import evaluate, export
    from fitnets.training.config import RunConfig, load_config
    from fitnets.training.run import Run


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fitnets' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
