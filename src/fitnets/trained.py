"""A trained student from Python: ``fitnets.export`` and ``fitnets.evaluate`` take the model object itself —
the command line's ``fitnets export`` / ``fitnets evaluate`` rebuild a model by its name, which a student given
to ``fitnets.distill`` as an ``nn.Module`` does not have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fitnets.core.inputs import InputFormat
from fitnets.data.checks import check_classes
from fitnets.data.datasets import DatasetSplit, Normalize
from fitnets.errors import FitNetsError
from fitnets.tools.export import export_student
from fitnets.training.config import RunConfig
from fitnets.training.evaluate import evaluate_accuracy
from fitnets.training.loading import config_of_run
from fitnets.training.loading import input_shape as run_input_shape
from fitnets.training.record import eval_view


def _model_name(model: nn.Module) -> str:
    if not isinstance(model, nn.Module):
        raise FitNetsError(f"the model is a {type(model).__name__}: give the trained nn.Module")
    return f"python:{type(model).__module__}.{type(model).__qualname__}"


def _run_config(run: str | Path | None) -> RunConfig | None:
    return config_of_run(run) if run is not None else None


def export(model: nn.Module, out_dir: str | Path, *, run: str | Path | None = None,
           input_shape: tuple[int, ...] | None = None, onnx: bool = True) -> dict[str, Any]:
    """Write a trained student object to ``out_dir`` as ``fitnets export`` does: ``model.safetensors``,
    ``model.json`` and ``model.onnx``.

    Args:
        model: the trained student (e.g. the object ``fitnets.distill`` trained in place).
        run: the run folder it was trained in: its input shape, logits rule and evaluation view (crop, mean,
            std) go into ``model.json``, so that ``load_exported(out_dir, model, view=True)`` sees what the
            reported accuracy was measured on.
        input_shape: one example's ``(C, H, W)``, without ``run``.

    Returns:
        What was written (``model.json``'s content).

    Example:
        >>> fitnets.distill(teacher, student, train_set, name="mine")
        >>> fitnets.export(student, "exported", run="runs/mine")
    """
    config = _run_config(run)
    shape = tuple(input_shape) if input_shape else run_input_shape(config) if config is not None else None
    if shape is None:
        raise FitNetsError("the input shape is not known: give run= (the run folder) or input_shape=(C, H, W)")
    return export_student(model, _model_name(model), out_dir, {}, onnx=onnx,
                          logits_key=config.logits_key if config is not None else None, input_shape=shape,
                          eval_view=eval_view(config or RunConfig(), shape))


@torch.no_grad()
def evaluate(model: nn.Module, test, *, run: str | Path | None = None, batch_size: int = 1000,
             num_classes: int | None = None, device: str | torch.device = "cpu") -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of a trained model object on a ``Dataset`` (items as
    ``fitnets.distill`` reads them), prepared as ``run`` evaluated its test split (crop, mean, std, input and
    label keys, logits rule) when given.

    Returns:
        ``{"acc": ..., "loss": ...}``.

    Example:
        >>> fitnets.evaluate(student, test_set, run="runs/mine")["acc"]
    """
    _model_name(model)
    config = _run_config(run) or RunConfig()
    cfg = config.data
    normalize = Normalize(cfg.mean, cfg.std) if cfg.mean is not None and cfg.std is not None else None
    classes = check_classes(num_classes, "num_classes") if num_classes is not None else None
    split = DatasetSplit(test, classes, keys=(cfg.input_key, cfg.label_key), name="the test set",
                         view=cfg.eval_view(), normalize=normalize).to(device)
    split.check()
    return evaluate_accuracy(model.to(device), split, batch_size, InputFormat(channels_last=config.channels_last),
                             config.logits_key)
