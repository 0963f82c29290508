"""Typed run configuration: dataclasses with documented fields, a YAML/TOML overlay, and validation.

``load_config(file, overrides)`` starts from the defaults, overlays the file, then the ``key=value``
overrides (dotted keys, e.g. ``optim.lr=0.01``); an unknown key is an error that names the closest one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

from fitnets.data.augment import Augmentation, CentreCrop, ResizedCrop
from fitnets.errors import FitNetsError, closest
from fitnets.training.recipes import METHODS


# The command line's flags that set config keys (``--hint-epochs 2`` → ``hint_stage.epochs``); the keyword flags
# of ``fitnets.distill`` are the same names. ``--lr`` and ``--optimizer`` set both stages' (``flag_overrides``).
FLAG_KEYS = {
    "student": "student", "teacher": "teacher", "method": "method", "hint": "hint", "guided": "guided",
    "epochs": "epochs", "hint_epochs": "hint_stage.epochs", "batch_size": "data.batch_size",
    "lr": ("optim.lr", "hint_stage.optim.lr"), "optimizer": ("optim.name", "hint_stage.optim.name"),
    "data": "data.name", "data_dir": "data.dir", "augment": "data.augment",
    "download": "data.download", "train_size": "data.train_size", "val_size": "data.val_size",
    "seed": "seed", "device": "device", "out": "out", "name": "name", "temperature": "kd.temperature",
    "tau_squared": "kd.tau_squared", "channels_last": "channels_last", "teacher_dtype": "teacher_dtype",
    "student_dtype": "student_dtype", "compile": "compile", "tensorboard": "tensorboard",
    "regressor_first": "hint_stage.regressor_first", "hint_diagnostics": "hint_stage.diagnostics",
}


def flag_overrides(flags: dict[str, Any], explicit: Iterable[str] = ()) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` for the flags given (``None``: not given). A flag with two keys (``--lr``,
    ``--optimizer``) sets the main stage's and FitNets' stage 1's, unless the second is among ``explicit`` (the
    keys a config file or ``--set`` gives): one learning rate for the whole run unless stage 1 is told otherwise."""
    explicit = set(explicit)
    pairs = []
    for flag, value in flags.items():
        if value is None:
            continue
        keys = FLAG_KEYS[flag] if isinstance(FLAG_KEYS[flag], tuple) else (FLAG_KEYS[flag],)
        pairs += [(key, value) for i, key in enumerate(keys) if i == 0 or key not in explicit]
    return pairs


def one_of(default: Any, choices: tuple) -> Any:
    """A config field that takes one of ``choices``: validation and the command line's ``choices`` both read
    them from here (``choices(key)``)."""
    return field(default=default, metadata={"choices": tuple(choices)})


DTYPES = ("float32", "bfloat16")


def default_workers(cores: int | None = None) -> int:
    """``data.workers``' default from the cores this process may use: one core stays with the training
    process, workers get the rest, at most 4; none on 2 cores or fewer, where a worker takes a core from the
    step (docs/results.md measures the Dataset path with 0 and 2 workers on 2 cores)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, cores - 1)


@dataclass
class DataConfig:
    """Dataset, augmentation and batching."""

    name: str = "fashion-mnist"        # fashion-mnist | mnist | cifar10 | cifar100 | svhn | folder | package.module:factory (yours)
    dir: str | None = None             # folder holding the files (then $FITNETS_DATA, /usr/share/datasets/NAME)
    download: bool = False             # fetch the official files (checksums verified) when none are found
    val_size: int = 5000               # held out from the training set for model selection (unless a val split is given)
    train_size: int | None = None      # train on a fixed random subset of this many examples
    test_size: int | None = None       # evaluate on a fixed random subset of the test set
    batch_size: int = 128              # the paper's batch size
    eval_batch_size: int = 1000
    preprocess: str = one_of("none", ("none", "standardize", "gcn_zca"))  # none (pixels / 255) | standardize | gcn_zca (the paper's CIFAR, §4.1)
    image_size: list[int] | None = None  # folders: resize every image to [H, W]; random-resized-crop: the output size
    augment: str = one_of("pad-flip", ("none", "pad-flip", "random-resized-crop"))  # the engine's random augmentation
    pad: int = 0                       # pad-flip: random translations of up to `pad` pixels (0: none)
    flip: bool = False                 # pad-flip and random-resized-crop: random horizontal flips
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])   # random-resized-crop: area share
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 4 / 3])  # random-resized-crop: aspect ratio
    eval_crop: float = 0.875           # random-resized-crop: evaluation shows the centre share, resized (ImageNet's 224/256)
    mean: list[float] | None = None    # per channel: inputs become (x − mean) / std after pixels / 255
    std: list[float] | None = None
    input_key: str = "pixel_values"    # your Dataset's dict items: the input's key
    label_key: str = "labels"          # ... and the label's
    stream: bool | None = None         # folders: read from disk through a DataLoader (null: when > memory_gb)
    memory_gb: float = 4.0             # folders larger than this once decoded are streamed (stream: null)
    workers: int = field(default_factory=default_workers)  # DataLoader processes (streamed folders, your Datasets)

    def augmentation(self):
        """The random augmentation of the training batches (false when there is none): the one place the
        settings become one."""
        size = tuple(self.image_size) if self.image_size else None
        if self.augment == "random-resized-crop":
            return ResizedCrop(size, tuple(self.crop_scale), tuple(self.crop_ratio), self.flip)
        return Augmentation(self.pad, self.flip) if self.augment == "pad-flip" else Augmentation()

    def eval_view(self) -> CentreCrop | None:
        """The fixed view evaluation sees: the centre crop under random-resized-crop, else the image as it is."""
        if self.augment != "random-resized-crop":
            return None
        return CentreCrop(tuple(self.image_size) if self.image_size else None, self.eval_crop)


@dataclass
class OptimConfig:
    """Optimizer of one training stage."""

    name: str = one_of("adam", ("adam", "sgd", "rmsprop"))  # adam | sgd | rmsprop (the paper: RMSProp)
    lr: float = 1e-3
    momentum: float = 0.9              # sgd momentum; rmsprop's decay (alpha) is 0.9 as in the paper
    weight_decay: float = 0.0
    schedule: str = one_of("cosine", ("cosine", "constant", "step"))  # cosine | constant | step (× gamma at each of `milestones` epochs)
    milestones: list[int] | None = None  # step schedule: epochs at which the learning rate is multiplied by gamma
    gamma: float = 0.1
    max_norm: float | None = None      # the paper's max-norm constraint on each filter / unit's weights


@dataclass
class KDConfig:
    """Stage 2 / KD loss: H(y, P_S) + λ·H(P_T^τ, P_S^τ) (FitNets §2.1)."""

    temperature: float = 3.0           # τ = 3 in every experiment of the paper
    weight_start: float = 4.0          # λ at the first epoch
    weight_end: float = 1.0            # λ after the decay
    decay_epochs: int | None = None    # epochs over which λ decays linearly (None: the whole stage)
    tau_squared: bool = False          # Hinton's τ² factor on the soft term (not in the paper)


@dataclass
class HintStageConfig:
    """Stage 1 of FitNets: the hint loss on the student's layers up to the guided layer plus the regressor."""

    epochs: int = 10
    optim: OptimConfig = field(default_factory=OptimConfig)
    patience: int | None = None        # stop after this many epochs without a better validation hint loss
    regressor_activation: str = "auto" # auto (the hint layer's, §2.2) | none | relu | maxoutN | ...
    pretrained_lr_scale: float = 1.0   # stage-2 lr factor for the layers stage 1 trained ([code] option)
    regressor_batch_norm: bool = False # conv + BN (+ activation), as in the common one-stage variant
    beta: float = 100.0                # method fitnet-onestage: weight of the hint MSE next to cross-entropy
    hint_extra_tokens: int | None = None    # token hint layers: leading non-patch tokens (null: found)
    guided_extra_tokens: int | None = None  # token guided layers: the same
    regressor_first: int = 0           # the first N hint epochs train the regressor alone, the student frozen (0: the paper)
    diagnostics: int = 0               # per hint epoch: linear probe and CKA on this many validation examples (0: off)


@dataclass
class StoreConfig:
    """The teacher-output store: KD under augmentation reads the teacher's logits per augmented view from disk."""

    enabled: bool = True               # KD stages under random augmentation use (and fill) a matching store
    dir: str | None = None             # cache folder (default: $FITNETS_CACHE, else ~/.cache/fitnets)
    max_gb: float = 8.0                # a store larger than this is not created (the teacher then runs live)
    per_epoch: bool = False            # drawn views (your Dataset's transforms, random-resized-crop): a slot per (epoch, example) of the run's seed
    # per_epoch: each epoch, enough stored slots are recomputed that a change to this share of the examples is
    # missed with probability ≤ 1% (store.audit_size: 44 slots at 0.1, 459 at 0.01)
    audit_share: float = 0.1


# The speed keys ``--fast`` chooses by measuring them (``fitnets.training.fast``).
FAST_TUNED = ("channels_last", "student_dtype", "teacher_dtype", "compile")


@dataclass
class FastConfig:
    """``--fast``: the speed options chosen by timing them on the run's own models, batch and device, before
    training (``fitnets.training.fast``); the run's saved config records the choice, so a resume reuses it."""

    mode: str = one_of("off", ("off", "tune", "retune", "tuned"))  # tune: measure (or reuse the choice cached for these models and machine); retune: measure again; tuned: chosen, the speed keys hold it
    keep: list[str] = field(default_factory=list)  # speed keys (FAST_TUNED) given explicitly: the choice leaves them as set


@dataclass
class RunConfig:
    """One training run: a network with cross-entropy, KD, or FitNets' two stages."""

    method: str = one_of("fitnet", METHODS)  # a name of the method table (fitnets.training.recipes.METHODS)
    student: str = "paper-mnist-fitnet"   # registered model name (the network trained)
    teacher: str | None = "paper-mnist-teacher"  # NAME (shipped weights) or NAME:PATH; unused for ce
    hint: str | None = None            # teacher module path (default: the registry's hint layer)
    guided: str | None = None          # student module path (default: the registry's guided layer)
    model_args: dict = field(default_factory=dict)  # keyword arguments of the student's constructor
    teacher_args: dict = field(default_factory=dict)  # the teacher's (a run folder's own model_args are used too)
    input_shape: list[int] | None = None  # [C, H, W] of one example (default: the model's, else the dataset's)
    logits_key: str | int | None = None  # the student's logits in its output when the rule does not find them
    teacher_logits_key: str | int | None = None  # the teacher's (rule: tensor, mapping's / object's logits, tuple's first)
    epochs: int = 20                   # epochs of the main stage (ce, kd, or FitNet stage 2)
    patience: int | None = None        # early stopping on validation accuracy
    keep: str = one_of("best", ("best", "last"))  # best (by validation accuracy) | last: the student the run ends with
    optim: OptimConfig = field(default_factory=OptimConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    hint_stage: HintStageConfig = field(default_factory=HintStageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    fast: FastConfig = field(default_factory=FastConfig)
    seed: int = 0
    device: str = "auto"               # auto | cpu | cuda | cuda:N
    channels_last: bool = False        # student in channels_last memory format (faster for some convnets)
    teacher_channels_last: bool = True # teacher in channels_last (faster forwards for most convnets; see the docs)
    teacher_fold_bn: bool = True       # fold the teacher's conv → batch-norm pairs (same outputs, less work)
    teacher_cache: bool = True         # compute teacher outputs once per example when valid (no augmentation)
    teacher_dtype: str = one_of("float32", DTYPES)  # float32 | bfloat16: the teacher's weights and forward
    cache_dtype: str = one_of("float32", DTYPES)  # float32 | bfloat16: how cached teacher outputs are stored
    student_dtype: str = one_of("float32", DTYPES)  # float32 | bfloat16: autocast for the student's forward and backward
    compile: bool = False              # torch.compile the student's (and the live teacher's) forward
    out: str = "runs"                  # parent folder of run folders
    name: str | None = None            # run folder name (default: method-student-seed)
    log_every: int = 50                # steps between progress-bar updates (each one syncs the device)
    tensorboard: bool = False          # also write the metrics as TensorBoard scalars in RUN_DIR/tensorboard

    def validate(self) -> "RunConfig":
        for key, allowed in _choice_fields(self):
            value = _get(self, key)
            if value not in allowed:
                raise FitNetsError(f"bad config: {key} must be one of {', '.join(map(str, allowed))}, not {value!r}")
        checks = [
            (not METHODS[self.method].teacher or bool(self.teacher), f"method {self.method} needs a teacher"),
            (self.epochs >= 0, f"epochs must be ≥ 0, got {self.epochs}"),
            (self.hint_stage.epochs >= 0, f"hint_stage.epochs must be ≥ 0, got {self.hint_stage.epochs}"),
            (self.kd.temperature > 0, f"kd.temperature must be > 0, got {self.kd.temperature}"),
            (self.data.batch_size > 0, f"data.batch_size must be > 0, got {self.data.batch_size}"),
            (self.data.val_size >= 0, f"data.val_size must be ≥ 0, got {self.data.val_size}"),
            (self.data.train_size is None or self.data.train_size >= 1,
             f"data.train_size must be ≥ 1 (or null: all), got {self.data.train_size}"),
            (self.data.test_size is None or self.data.test_size >= 1,
             f"data.test_size must be ≥ 1 (or null: all), got {self.data.test_size}"),
            (self.data.eval_batch_size > 0, f"data.eval_batch_size must be > 0, got {self.data.eval_batch_size}"),
            (self.data.pad >= 0, f"data.pad must be ≥ 0, got {self.data.pad}"),
            (len(self.data.crop_scale) == 2 and 0 < self.data.crop_scale[0] <= self.data.crop_scale[1] <= 1,
             f"data.crop_scale must be [low, high] with 0 < low ≤ high ≤ 1, got {self.data.crop_scale}"),
            (len(self.data.crop_ratio) == 2 and 0 < self.data.crop_ratio[0] <= self.data.crop_ratio[1],
             f"data.crop_ratio must be [low, high] with 0 < low ≤ high, got {self.data.crop_ratio}"),
            (0 < self.data.eval_crop <= 1, f"data.eval_crop must be in (0, 1], got {self.data.eval_crop}"),
            ((self.data.mean is None) == (self.data.std is None) and (self.data.mean is None or (
                len(self.data.mean) == len(self.data.std) and min(self.data.std) > 0
                and all(math.isfinite(v) for v in self.data.mean + self.data.std))),
             f"data.mean and data.std go together, one finite value per channel, std > 0; got {self.data.mean} and "
             f"{self.data.std}"),
            (self.data.image_size is None or (len(self.data.image_size) == 2 and min(self.data.image_size) > 0),
             f"data.image_size must be [H, W] with both > 0, got {self.data.image_size}"),
            (self.patience is None or self.patience >= 1, f"patience must be ≥ 1 (or null), got {self.patience}"),
            (self.hint_stage.patience is None or self.hint_stage.patience >= 1,
             f"hint_stage.patience must be ≥ 1 (or null), got {self.hint_stage.patience}"),
            (0 <= self.hint_stage.regressor_first <= self.hint_stage.epochs,
             f"hint_stage.regressor_first must be between 0 and hint_stage.epochs ({self.hint_stage.epochs}), got "
             f"{self.hint_stage.regressor_first}"),
            (self.hint_stage.diagnostics == 0 or self.hint_stage.diagnostics >= 8,
             f"hint_stage.diagnostics must be 0 (off) or at least 8 examples, got {self.hint_stage.diagnostics}"),
            (self.method == "fitnet" or not (self.hint_stage.regressor_first or self.hint_stage.diagnostics),
             f"hint_stage.regressor_first and hint_stage.diagnostics belong to FitNets' stage 1 (method fitnet), "
             f"not method {self.method}; `fitnets diagnose RUN_DIR` measures any run's student"),
            (self.hint_stage.pretrained_lr_scale >= 0,
             f"hint_stage.pretrained_lr_scale must be ≥ 0, got {self.hint_stage.pretrained_lr_scale}"),
            (self.log_every > 0, f"log_every must be > 0, got {self.log_every}"),
            (self.input_shape is None or (len(self.input_shape) == 3 and min(self.input_shape) > 0),
             f"input_shape must be [C, H, W] with all > 0, got {self.input_shape}"),
            (self.data.workers >= 0, f"data.workers must be ≥ 0, got {self.data.workers}"),
            (self.data.memory_gb > 0, f"data.memory_gb must be > 0, got {self.data.memory_gb}"),
            (self.store.max_gb > 0, f"store.max_gb must be > 0, got {self.store.max_gb}"),
            (0 < self.store.audit_share < 1, f"store.audit_share must be in (0, 1), got {self.store.audit_share}"),
            (set(self.fast.keep) <= set(FAST_TUNED),
             f"fast.keep takes keys among {', '.join(FAST_TUNED)}, got {self.fast.keep}"),
        ]
        for optim, where in ((self.optim, "optim"), (self.hint_stage.optim, "hint_stage.optim")):
            checks += [
                (optim.lr > 0, f"{where}.lr must be > 0, got {optim.lr}"),
                (optim.schedule != "step" or bool(optim.milestones), f"{where}.schedule step needs {where}.milestones"),
                (optim.max_norm is None or optim.max_norm > 0, f"{where}.max_norm must be > 0, got {optim.max_norm}"),
            ]
        for ok, message in checks:
            if not ok:
                raise FitNetsError(f"bad config: {message}")
        return self


def _choice_fields(obj, prefix: str = ""):
    """``(dotted key, choices)`` of every field of ``obj`` (and its sections) declared with ``one_of``."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _choice_fields(value, f"{prefix}{f.name}.")
        elif "choices" in f.metadata:
            yield prefix + f.name, f.metadata["choices"]


def _get(obj, key: str) -> Any:
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def choices(key: str) -> tuple | None:
    """The values the config field at dotted ``key`` takes (``"optim.name"`` → ``("adam", "sgd", "rmsprop")``),
    or ``None`` for a free field: the command line's ``choices`` read them here."""
    return dict(_choice_fields(RunConfig())).get(key)


def _field_type(cls, name: str):
    return typing.get_type_hints(cls)[name]


def _coerce(value: Any, kind, key: str) -> Any:
    """Check ``value`` against the annotation ``kind``; ints are accepted for floats."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except FitNetsError as err:
                errors.append(err)
        raise errors[0]
    if origin is list:
        if not isinstance(value, list):
            raise FitNetsError(f"bad config value for {key}: {value!r} is not a list")
        (item,) = typing.get_args(kind)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-5" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if kind is dict and isinstance(value, dict):
        return value
    if isinstance(kind, type) and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    name = getattr(kind, "__name__", str(kind))
    raise FitNetsError(f"bad config value for {key}: {value!r} is not a {name}")


def _apply(obj, values: dict[str, Any], prefix: str = "") -> None:
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        full = prefix + key
        if key not in names:
            candidates = [prefix + n for n in names]
            raise FitNetsError(f"unknown config key {full!r}.{closest(full, candidates)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise FitNetsError(f"bad config value for {full}: expected a section (mapping), got {value!r}")
            _apply(current, value, full + ".")
        elif isinstance(current, dict) and isinstance(value, dict):  # model_args: each layer adds its keys
            setattr(obj, key, {**current, **value})
        else:
            setattr(obj, key, _coerce(value, _field_type(type(obj), key), full))


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.01"`` → ``("optim.lr", 0.01)``; the value is read as YAML (numbers, true/false, null)."""
    if "=" not in text:
        raise FitNetsError(f"bad override {text!r}: expected KEY=VALUE, e.g. optim.lr=0.01")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def nest(key: str, value: Any) -> dict[str, Any]:
    """``("a.b", 1)`` → ``{"a": {"b": 1}}``."""
    for part in reversed(key.split(".")[1:]):
        value = {part: value}
    return {key.split(".")[0]: value}


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FitNetsError(f"config file {path} does not exist")
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise FitNetsError(f"cannot parse {path}: {str(err).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FitNetsError(f"{path} must hold a mapping of config keys")
    return data


def load_config(path: str | Path | None = None, overrides: list[tuple[str, Any]] | None = None,
                base: RunConfig | None = None) -> RunConfig:
    """Defaults (or ``base``), then the file at ``path``, then the ``(dotted key, value)`` overrides."""
    config = base if base is not None else RunConfig()
    if path is not None:
        _apply(config, read_config_file(path))
    for key, value in overrides or []:
        _apply(config, nest(key, value))
    return config.validate()


def to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (config sections only; dict-valued fields such as ``model_args``
    stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key not in ("model_args", "teacher_args"):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


# The resume rule. A resumed run continues the *same* training: what the checkpoint's weights, optimizer state
# and data order were made with cannot change, nor the folder's name (out, name). What may change is how long it trains and how it steps from
# here (epochs, patience, learning rate and its schedule, max-norm, weight decay), where the data is read from,
# logging, and the speed options (device, memory formats, dtypes, compile, caching, the store).
_SCHEDULE = ("lr", "schedule", "milestones", "gamma", "weight_decay", "max_norm")
RESUME_MAY_CHANGE = frozenset([
    "epochs", "patience", "keep", "log_every", "tensorboard", "device", "compile", "channels_last",
    "teacher_channels_last", "teacher_fold_bn", "teacher_cache", "teacher_dtype", "cache_dtype", "student_dtype",
    "hint_stage.epochs", "hint_stage.patience", "hint_stage.diagnostics", "data.dir", "data.download", "data.eval_batch_size",
    "data.workers", "data.memory_gb", "data.stream", "store.enabled", "store.dir", "store.max_gb", "store.per_epoch",
    "store.audit_share",
    "fast.mode", "fast.keep",
    *(f"optim.{k}" for k in _SCHEDULE), *(f"hint_stage.optim.{k}" for k in _SCHEDULE)])


def resume_changes(saved: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    """The settings ``new`` changes from the ``saved`` config of the run being resumed, ``{key: (old, new)}``.

    Raises:
        FitNetsError: a change the resume rule refuses (``RESUME_MAY_CHANGE`` lists what may change).
    """
    changed = config_changes(saved, new)
    refused = identity_changes(changed)
    if refused:
        raise FitNetsError(f"a resume cannot change {refused}: the checkpoint was trained with the saved value; start "
                           "a new run (another --name) to change it")
    return changed


def config_changes(old: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every setting that differs."""
    before, after = flatten(to_dict(old)), flatten(to_dict(new))
    return {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}


def identity_changes(changed: dict[str, tuple[Any, Any]]) -> str:
    """The changes among ``changed`` that the resume rule refuses, as text (``""`` when none)."""
    refused = [k for k in changed if k not in RESUME_MAY_CHANGE]
    shown = ", ".join(f"{k} ({changed[k][0]!r} → {changed[k][1]!r})" for k in refused[:3])
    return shown + (" and more" if len(refused) > 3 else "")


def from_dict(values: dict[str, Any]) -> RunConfig:
    config = RunConfig()
    _apply(config, values)
    return config.validate()
