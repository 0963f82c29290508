"""What a run loads, in one place: models named ``NAME``, ``NAME:PATH`` or by a run folder, a run folder's
config, and a config's data splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn

from fitnets.checkpoint import load_weights
from fitnets.data.loader import ImageData, load_dataset, split_validation, take
from fitnets.data.preprocess import Preprocess
from fitnets.errors import FitNetsError
from fitnets.models.registry import EXTERNAL_LIBRARIES, create_model, is_import_path, model_spec
from fitnets.training.config import RunConfig, from_dict


def config_of_run(run_dir: str | Path) -> RunConfig:
    """The resolved config a run folder was started with."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FitNetsError(f"{run_dir} is not a run folder (no config.yaml)")
    return from_dict(yaml.safe_load(path.read_text()))


@dataclass
class ModelRef:
    """A model as the command line names it: ``NAME`` (the registry's model, with its shipped weights when it
    has some), ``NAME:PATH`` (weights from a safetensors file, or from a run folder's ``student.safetensors``)
    or ``RUN_DIR`` (a run folder's student). ``NAME`` may also be ``package.module:factory`` (a callable that
    returns the model) or ``torchvision:NAME`` / ``timm:NAME``, with ``:PATH`` after it. A run folder's ``model_args`` (e.g. ``num_classes``) come with it.

    Attributes:
        name: the registered model name.
        weights: the weights file, or ``None`` for ``NAME``.
        model_args: constructor arguments from the run folder (empty otherwise).
        run: the run folder's config, when the model comes from one.
    """

    name: str
    weights: Path | None = None
    model_args: dict = field(default_factory=dict)
    run: RunConfig | None = None

    @classmethod
    def parse(cls, spec: str) -> "ModelRef":
        if ":" not in spec and Path(spec).is_dir():
            run = config_of_run(spec)
            return cls(run.student, Path(spec) / "student.safetensors", dict(run.model_args), run)
        name, _, path = spec.partition(":")
        if name in EXTERNAL_LIBRARIES or is_import_path(spec):  # LIBRARY:NAME[:PATH], package.module:factory[:PATH]
            attr, _, path = path.partition(":")
            name = f"{name}:{attr}"
        if not path:
            return cls(name)
        weights, run = Path(path), None
        if weights.is_dir():
            run = config_of_run(weights) if (weights / "config.yaml").is_file() else None
            weights = weights / "student.safetensors"
        return cls(name, weights, dict(run.model_args) if run else {}, run)


def load_model(spec: str | ModelRef, trained: bool = False, flag: str = "--teacher", **kwargs) -> nn.Module:
    """Build the model ``spec`` names (see ``ModelRef``) with its weights.

    Args:
        trained: the model must come with trained weights (a teacher, a model to evaluate or export): a
            ``NAME`` without shipped weights is then an error naming ``flag``.
        **kwargs: constructor arguments, over the run folder's own ``model_args``.
    """
    ref = spec if isinstance(spec, ModelRef) else ModelRef.parse(spec)
    kwargs = {**ref.model_args, **kwargs}
    if ref.weights is None:
        shipped = model_spec(ref.name).pretrained is not None
        if trained and not shipped:
            raise FitNetsError(f"{ref.name!r} has no shipped weights: give trained ones as {flag} {ref.name}:PATH")
        return create_model(ref.name, pretrained=shipped, **kwargs)
    return load_weights(create_model(ref.name, **kwargs), ref.weights)


DATASET_SHAPES = {"fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32),
                  "cifar100": (3, 32, 32), "svhn": (3, 32, 32)}


def input_shape(config: RunConfig) -> tuple[int, ...]:
    """One example's ``(C, H, W)`` for the student: ``config.input_shape``, else the registry's, else the
    dataset's (a folder's: 3 × ``data.image_size``)."""
    if config.input_shape:
        return tuple(config.input_shape)
    shape = model_spec(config.student).input_shape
    if shape:
        return tuple(shape)
    if config.data.name in DATASET_SHAPES:
        return DATASET_SHAPES[config.data.name]
    if config.data.image_size:
        return (3, *config.data.image_size)
    raise FitNetsError(f"the input shape of {config.student} is not known: set input_shape=[C, H, W] "
                       "(--set input_shape=[3,224,224])")


@dataclass
class Data:
    """The three splits of a run, on its device."""

    train: ImageData
    val: ImageData
    test: ImageData


def load_data(config: RunConfig, device: torch.device) -> Data:
    """The run's training, validation and test splits: the validation split is the same draw for every seed
    and method; preprocessing is fitted on the training split only."""
    cfg = config.data
    size = tuple(cfg.image_size) if cfg.image_size else None
    train, test = (load_dataset(cfg.name, split, cfg.dir, cfg.download, size, cfg.stream, cfg.memory_gb, cfg.workers)
                   for split in ("train", "test"))
    train, val = split_validation(train, cfg.val_size, seed=0)
    train, test = take(train, cfg.train_size), take(test, cfg.test_size)
    if cfg.preprocess != "none":
        if not isinstance(train, ImageData):
            raise FitNetsError(f"data.preprocess={cfg.preprocess} needs the dataset in memory, and this folder is "
                               "streamed from disk; set data.stream=false (it must fit in memory) or preprocess=none")
        prep = Preprocess(cfg.preprocess).fit(train.images)
        train, val, test = (ImageData(prep(d.images), d.labels, d.num_classes) for d in (train, val, test))
    return Data(train.to(device), val.to(device), test.to(device))
