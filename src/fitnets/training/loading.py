"""What a run loads, in one place: models named ``NAME``, ``NAME:PATH`` or by a run folder, a run folder's
config, and a config's data splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn

from fitnets import imports
from fitnets.checkpoint import load_weights
from fitnets.data.checks import check_classes
from fitnets.data.datasets import DatasetSplit, Normalize
from fitnets.data.images import ImageData, held_in_memory
from fitnets.data.loader import load_dataset, split_validation, take
from fitnets.data.preprocess import Preprocess
from fitnets.data.split import Split
from fitnets.errors import FitNetsError
from fitnets.imports import cause, import_callable
from fitnets.models.registry import EXTERNAL_LIBRARIES, create_model, is_model_factory, model_spec
from fitnets.training.config import RunConfig, from_dict

log = logging.getLogger(__name__)


def config_of_run(run_dir: str | Path) -> RunConfig:
    """The resolved config a run folder was started with (its ``config.yaml``).

    Raises:
        FitNetsError: no ``config.yaml``, or one that is not a readable mapping of config keys (one line).
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FitNetsError(f"{run_dir} is not a run folder (no config.yaml)")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise FitNetsError(f"cannot read {path}: {str(err).splitlines()[0]} — it was damaged or edited by hand; "
                           "restore it (a run's checkpoint keeps the config it was trained with)") from None
    if not isinstance(values, dict):
        raise FitNetsError(f"{path} holds {'nothing' if values is None else 'a ' + type(values).__name__}, not the "
                           "run's config (a mapping of config keys); restore it")
    try:
        return from_dict(values)
    except FitNetsError as err:
        raise FitNetsError(f"{path}: {err}") from None


@dataclass
class ModelRef:
    """A model as the command line names it: ``NAME`` (the registry's model, with its shipped weights when it
    has some), ``NAME:PATH`` (weights from a safetensors file, or from a run folder's ``student.safetensors``)
    or ``RUN_DIR`` (a run folder's student). ``NAME`` may also be ``package.module:factory`` (a callable that
    returns the model) or ``torchvision:NAME`` / ``timm:NAME``, with ``:PATH`` after it. A run folder's
    ``model_args`` (e.g. ``num_classes``) come with it.

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
    def parse(cls, spec: str) -> ModelRef:
        if imports.is_object_name(spec):  # a model given as an object (fitnets.distill): nothing to build it by
            return cls(spec)
        if ":" not in spec and Path(spec).is_dir():
            run = config_of_run(spec)
            return cls(run.student, Path(spec) / "student.safetensors", dict(run.model_args), run)
        name, _, path = spec.partition(":")
        if name in EXTERNAL_LIBRARIES or is_model_factory(spec):  # LIBRARY:NAME[:PATH], package.module:factory[:PATH]
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


def default_name(config: RunConfig) -> str:
    """A run folder's default name: method, student, seed (a ``package.module:factory`` or ``python:...``
    student by its last part)."""
    student = config.student.rpartition(":")[2].rpartition(".")[2] if ":" in config.student else config.student
    return f"{config.method}-{student}-seed{config.seed}"


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
    """The three splits of a run, on its device: each an ``ImageData`` (in memory), a ``FolderStream`` or a
    ``DatasetSplit`` (your Dataset) — the engine does not care which: it asks the ``Split`` protocol."""

    train: Split
    val: Split
    test: Split


def load_data(config: RunConfig, device: torch.device) -> Data:
    """The run's training, validation and test splits: the validation split is the same draw for every seed
    and method; preprocessing is fitted on the training split only. ``data.name`` may be
    ``package.module:factory``: a callable returning ``{"train": Dataset, "test": Dataset}`` and optionally
    ``"val"`` and ``"num_classes"``."""
    cfg = config.data
    if imports.spelled_as_import(cfg.name):
        return user_data(config, device, **_call_data_factory(cfg.name),
                         classes_by=f"make {cfg.name} return 'num_classes': ")
    size = (cfg.image_size[0], cfg.image_size[1]) if cfg.image_size and cfg.augment != "random-resized-crop" else None
    if cfg.augment == "random-resized-crop" and cfg.name == "folder" and cfg.image_size:
        # a folder's images are read at one size; the crop then resizes to it too
        size = (cfg.image_size[0], cfg.image_size[1])
    train, test = (load_dataset(cfg.name, split, cfg.dir, cfg.download, size, cfg.stream, cfg.memory_gb, cfg.workers)
                   for split in ("train", "test"))
    train, val = split_validation(train, cfg.val_size, seed=0)
    train, test = take(train, cfg.train_size), take(test, cfg.test_size)
    if cfg.preprocess != "none":
        # in memory: whole tensors (ImageData), which a preprocessing is fitted on and applied to
        if not (held_in_memory(train) and held_in_memory(val) and held_in_memory(test)):
            raise FitNetsError(f"data.preprocess={cfg.preprocess} needs the dataset in memory, and this folder is "
                               "streamed from disk; set data.stream=false (it must fit in memory) or preprocess=none")
        prep = Preprocess(cfg.preprocess).fit(train.images)
        train, val, test = (ImageData(prep(d.images), d.labels, d.num_classes) for d in (train, val, test))
    return _finish(cfg, device, train, val, test)


def _finish(cfg, device: torch.device, train, val, test) -> Data:
    """The splits with their evaluation view and normalisation, on ``device``."""
    normalize = Normalize(cfg.mean, cfg.std) if cfg.mean is not None else None
    view = cfg.eval_view()
    return Data(train.with_view(None, normalize).to(device), val.with_view(view, normalize).to(device),
                test.with_view(view, normalize).to(device))


DATA_KEYS = ("train", "val", "test", "num_classes")


def _call_data_factory(spec: str) -> dict:
    """``{"train": ..., "test": ..., "val": ..., "num_classes": ...}`` from the user's data factory, checked."""
    factory = import_callable(spec, "the data")
    try:
        splits = factory()
    except Exception as err:
        raise FitNetsError(f"{spec}() raised {cause(err)}") from None
    if not isinstance(splits, dict):
        raise FitNetsError(f"{spec} returned a {type(splits).__name__}; it must return a dict "
                           "{'train': Dataset, 'test': Dataset} (optionally 'val' and 'num_classes')")
    if splits.get("num_classes") is not None:
        check_classes(splits["num_classes"], f"the 'num_classes' {spec} returned")
    unknown = [k for k in splits if k not in DATA_KEYS]
    missing = [k for k in ("train", "test") if splits.get(k) is None]
    if unknown or missing:
        raise FitNetsError(f"{spec} returned a dict " + (f"without {', '.join(map(repr, missing))}" if missing else
                           f"with unknown keys {', '.join(map(repr, unknown))}") + f"; keys: {', '.join(DATA_KEYS)}")
    return splits


def user_data(config: RunConfig, device: torch.device, train, test=None, val=None,
              num_classes: int | None = None, classes_by: str = "give num_classes=") -> Data:
    """Your ``Dataset`` objects as a run's splits (``DatasetSplit``): the validation split is ``val`` or
    ``data.val_size`` examples held out of ``train`` (the same draw for every seed and method); without ``test``
    the test figures are the validation split's (logged). ``num_classes``: counted from the labels if not
    given; ``classes_by``: how the caller gives more classes, for the message about a label beyond them.
    Labels and the first items of every split are checked before anything trains (``fitnets.data.checks``)."""
    cfg = config.data
    if num_classes is not None:
        num_classes = check_classes(num_classes, "num_classes")
    if cfg.preprocess != "none":
        raise FitNetsError(f"data.preprocess={cfg.preprocess} is fitted on images held in memory; for your Dataset, "
                           "normalise with data.mean / data.std or in its transform")

    def split(dataset, name: str, classes: int | None):
        if isinstance(dataset, Split):  # already a split (the protocol, not a class)
            return dataset
        return DatasetSplit(dataset, classes, keys=(cfg.input_key, cfg.label_key), workers=cfg.workers, name=name,
                            classes_advice=classes_by)

    train = split(train, "the training set", num_classes)
    num_classes = train.num_classes
    if val is None:
        train, val = split_validation(train, cfg.val_size, seed=0)
    else:
        val = split(val, "the validation set", num_classes)
    train = take(train, cfg.train_size)
    if test is None:
        log.info("no test set given: the test figures are the validation split's")
        test = val
    else:
        test = take(split(test, "the test set", num_classes), cfg.test_size)
    data = _finish(cfg, device, train, val, test)
    for part in {id(p): p for p in (data.train, data.val, data.test)}.values():
        part.check()
    return data
