"""The run configuration's schema: typed dataclasses with documented fields, their choices, and validation.

A leaf: it describes a run and imports nothing that runs one — the method names and facts come from the method
table (``fitnets.training.methods``), the speed options' names and choices from ``fitnets.training.speed``.
Loading a config from files and flags is ``fitnets.training.config``'s job.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from fitnets.data.augment import Augmentation, CentreCrop, RandomAugmentation, ResizedCrop, pair
from fitnets.errors import FitNetsError
from fitnets.training.methods import METHODS
from fitnets.training.speed import DTYPE_NAMES, FAST_TUNED


def _normalisation_ok(mean: list[float] | None, std: list[float] | None) -> bool:
    """``data.mean`` and ``data.std``: both absent, or one finite value each per channel with std > 0."""
    if mean is None or std is None:
        return mean is None and std is None
    return len(mean) == len(std) and min(std) > 0 and all(math.isfinite(v) for v in mean + std)


def one_of(default: Any, choices: tuple) -> Any:
    """A config field that takes one of ``choices``: validation and the command line's ``choices`` both read
    them from here (``choices(key)``)."""
    return field(default=default, metadata={"choices": tuple(choices)})


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

    # fashion-mnist | mnist | cifar10 | cifar100 | svhn | folder | package.module:factory (yours)
    name: str = "fashion-mnist"
    dir: str | None = None             # folder holding the files (then $FITNETS_DATA, /usr/share/datasets/NAME)
    download: bool = False             # fetch the official files (checksums verified) when none are found
    # held out from the training set for model selection (unless a val split is given)
    val_size: int = 5000
    train_size: int | None = None      # train on a fixed random subset of this many examples
    test_size: int | None = None       # evaluate on a fixed random subset of the test set
    batch_size: int = 128              # the paper's batch size
    eval_batch_size: int = 1000
    # none (pixels / 255) | standardize | gcn_zca (the paper's CIFAR, §4.1)
    preprocess: str = one_of("none", ("none", "standardize", "gcn_zca"))
    image_size: list[int] | None = None  # folders: resize every image to [H, W]; random-resized-crop: the output size
    augment: str = one_of("pad-flip", ("none", "pad-flip", "random-resized-crop"))  # the engine's random augmentation
    pad: int = 0                       # pad-flip: random translations of up to `pad` pixels (0: none)
    flip: bool = False                 # pad-flip and random-resized-crop: random horizontal flips
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])   # random-resized-crop: area share
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 4 / 3])  # random-resized-crop: aspect ratio
    # random-resized-crop: evaluation shows the centre share, resized (ImageNet's 224/256)
    eval_crop: float = 0.875
    mean: list[float] | None = None    # per channel: inputs become (x − mean) / std after pixels / 255
    std: list[float] | None = None
    input_key: str = "pixel_values"    # your Dataset's dict items: the input's key
    label_key: str = "labels"          # ... and the label's
    stream: bool | None = None         # folders: read from disk through a DataLoader (null: when > memory_gb)
    memory_gb: float = 4.0             # folders larger than this once decoded are streamed (stream: null)
    workers: int = field(default_factory=default_workers)  # DataLoader processes (streamed folders, your Datasets)

    def augmentation(self) -> RandomAugmentation:
        """The random augmentation of the training batches (false when there is none): the one place the
        settings become one."""
        size = pair(self.image_size) if self.image_size else None
        if self.augment == "random-resized-crop":
            return ResizedCrop(size, pair(self.crop_scale), pair(self.crop_ratio), self.flip)
        return Augmentation(self.pad, self.flip) if self.augment == "pad-flip" else Augmentation()

    def eval_view(self) -> CentreCrop | None:
        """The fixed view evaluation sees: the centre crop under random-resized-crop, else the image as it is."""
        if self.augment != "random-resized-crop":
            return None
        return CentreCrop(pair(self.image_size) if self.image_size else None, self.eval_crop)


@dataclass
class OptimConfig:
    """Optimizer of one training stage."""

    name: str = one_of("adam", ("adam", "sgd", "rmsprop"))  # adam | sgd | rmsprop (the paper: RMSProp)
    lr: float = 1e-3
    momentum: float = 0.9              # sgd momentum; rmsprop's decay (alpha) is 0.9 as in the paper
    weight_decay: float = 0.0
    # cosine | constant | step (× gamma at each of `milestones` epochs)
    schedule: str = one_of("cosine", ("cosine", "constant", "step"))
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
    # the first N hint epochs train the regressor alone, the student frozen (0: the paper)
    regressor_first: int = 0
    diagnostics: int = 0               # per hint epoch: linear probe and CKA on this many validation examples (0: off)


@dataclass
class StoreConfig:
    """The teacher-output store: KD under augmentation reads the teacher's logits per augmented view from disk."""

    enabled: bool = True               # KD stages under random augmentation use (and fill) a matching store
    dir: str | None = None             # cache folder (default: $FITNETS_CACHE, else ~/.cache/fitnets)
    max_gb: float = 8.0                # a store larger than this is not created (the teacher then runs live)
    # drawn views (your Dataset's transforms, random-resized-crop): a slot per (epoch, example) of the run's seed
    per_epoch: bool = False
    # per_epoch: each epoch, enough stored slots are recomputed that a change to this share of the examples is
    # missed with probability ≤ 1% (store.audit_size: 44 slots at 0.1, 459 at 0.01)
    audit_share: float = 0.1
    # un-augmented data too, a slot per example (`fitnets frontier`: one teacher pass)
    unaugmented: bool = False


@dataclass
class FastConfig:
    """``--fast``: the speed options chosen by timing them on the run's own models, batch and device, before
    training (``fitnets.training.fast``); the run's saved config records the choice, so a resume reuses it."""

    # tune: measure (or reuse the choice cached for these models and machine); retune: measure again; tuned: chosen, the
    # speed keys hold it
    mode: str = one_of("off", ("off", "tune", "retune", "tuned"))
    # speed keys (speed.FAST_TUNED) given explicitly: the choice leaves them as set
    keep: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    """One training run: a network with cross-entropy, KD, or FitNets' two stages."""

    method: str = one_of("fitnet", tuple(METHODS))  # a name of the method table (fitnets.training.methods.METHODS)
    student: str = "paper-mnist-fitnet"   # registered model name (the network trained)
    teacher: str | None = "paper-mnist-teacher"  # NAME (shipped weights) or NAME:PATH; unused for ce
    hint: str | None = None            # teacher module path (default: the registry's hint layer)
    guided: str | None = None          # student module path (default: the registry's guided layer)
    model_args: dict = field(default_factory=dict)  # keyword arguments of the student's constructor
    teacher_args: dict = field(default_factory=dict)  # the teacher's (a run folder's own model_args are used too)
    input_shape: list[int] | None = None  # [C, H, W] of one example (default: the model's, else the dataset's)
    logits_key: str | int | None = None  # the student's logits in its output when the rule does not find them
    # the teacher's (rule: tensor, mapping's / object's logits, tuple's first)
    teacher_logits_key: str | int | None = None
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
    teacher_dtype: str = one_of("float32", DTYPE_NAMES)  # float32 | bfloat16: the teacher's weights and forward
    cache_dtype: str = one_of("float32", DTYPE_NAMES)  # float32 | bfloat16: how cached teacher outputs are stored
    # float32 | bfloat16: autocast for the student's forward and backward
    student_dtype: str = one_of("float32", DTYPE_NAMES)
    compile: bool = False              # torch.compile the student's (and the live teacher's) forward
    out: str = "runs"                  # parent folder of run folders
    name: str | None = None            # run folder name (default: method-student-seed)
    log_every: int = 50                # steps between progress-bar updates (each one syncs the device)
    tensorboard: bool = False          # also write the metrics as TensorBoard scalars in RUN_DIR/tensorboard

    def validate(self) -> RunConfig:
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
            (_normalisation_ok(self.data.mean, self.data.std),
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
            (METHODS[self.method].stage1 or not (self.hint_stage.regressor_first or self.hint_stage.diagnostics),
             f"hint_stage.regressor_first and hint_stage.diagnostics belong to FitNets' stage 1 (method "
             f"{', '.join(m for m in METHODS if METHODS[m].stage1)}), not method {self.method}; `fitnets diagnose "
             "RUN_DIR` measures any run's student"),
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


def to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
