"""The speed options of a run, in one place: what each dtype name means, which options ``--fast`` measures (and
among which values), which it sets without measuring, which ones a resume may change, and a run's choice of them
as one value (``Speed``).

A leaf of the config (it imports torch and nothing of fitnets): the config declares its speed fields with these
names and choices, ``fitnets.training.fast`` times the candidates it lists, the teacher is wrapped from a
``Speed`` (``fitnets.training.teacher_outputs.frozen_teacher``), and ``fitnets bench step`` names its cases by it.
None of these options changes what a run computes beyond float rounding; that is why a resume may change them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

# A config dtype name → the torch dtype (the teacher's weights, the stored or cached outputs, the autocast).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DTYPE_NAMES = tuple(DTYPES)


def dtype(name: str) -> torch.dtype:
    """The torch dtype a config dtype name stands for."""
    return DTYPES[name]


def lowered(name: str) -> torch.dtype | None:
    """The dtype a computation is lowered to (the teacher's weights, the student's autocast): ``None`` for
    float32, which is no lowering at all."""
    return None if name == "float32" else DTYPES[name]


def dtype_name(value: torch.dtype) -> str:
    """The config name of a torch dtype (``torch.bfloat16`` → ``"bfloat16"``)."""
    return {v: k for k, v in DTYPES.items()}[value]


# What ``--fast`` measures, per part of a training step, and among which values (the config's value first).
STUDENT_KEYS = ("channels_last", "student_dtype", "compile")
TEACHER_KEYS = ("teacher_dtype",)
TUNED_VALUES: dict[str, tuple] = {"channels_last": (False, True), "student_dtype": DTYPE_NAMES,
                                  "teacher_dtype": DTYPE_NAMES, "compile": (False, True)}
FAST_TUNED = tuple(TUNED_VALUES)
# What ``--fast`` sets without measuring: the store's dtype (half the disk) and the teacher's memory format.
FIXED: dict[str, Any] = {"cache_dtype": "bfloat16", "teacher_channels_last": True}

# Every speed option of a run (top-level config keys): what ``Speed`` holds and a resume may change.
SPEED_KEYS = ("channels_last", "student_dtype", "compile", "teacher_dtype", "teacher_channels_last",
              "teacher_fold_bn", "teacher_cache", "cache_dtype")
# The other settings a resume may change because they change how fast, not what, the run computes.
RESUMABLE_SPEED = ("device", "data.workers", "data.memory_gb", "data.stream", "store.enabled", "store.dir",
                   "store.max_gb", "store.per_epoch", "store.audit_share", "store.unaugmented", "fast.mode",
                   "fast.keep")


@dataclass(frozen=True)
class Speed:
    """A run's speed options, named as its config names them (``Speed.of(config)``; the defaults are the
    config's, ``Speed.of(RunConfig())``).

    ``compile`` compiles the student's CE/KD forward and the live teacher's; ``teacher_compile`` may be set
    apart only by ``fitnets bench step``'s option matrix (``None``: as ``compile``).
    """

    channels_last: bool
    student_dtype: str
    compile: bool
    teacher_dtype: str
    teacher_channels_last: bool
    teacher_fold_bn: bool
    teacher_cache: bool
    cache_dtype: str
    teacher_compile: bool | None = None

    @classmethod
    def of(cls, config: Any, **options: Any) -> Speed:
        """What a run with ``config`` uses, ``options`` replacing some of it (a candidate of the tuner)."""
        return cls(**({key: getattr(config, key) for key in SPEED_KEYS} | options))

    def replace(self, **options: Any) -> Speed:
        return replace(self, **options)

    @property
    def autocast(self) -> torch.dtype | None:
        """The student's autocast dtype (``None``: float32, no autocast)."""
        return lowered(self.student_dtype)

    @property
    def compiles_teacher(self) -> bool:
        return self.compile if self.teacher_compile is None else self.teacher_compile

    def options(self) -> dict[str, Any]:
        """The config keys this speed sets (``teacher_compile`` is no config key)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in SPEED_KEYS}


def label(options: dict[str, Any]) -> str:
    """A candidate's name in the log, the cache and the plan: ``"bf16 autocast, channels_last"``."""
    words = []
    if "student_dtype" in options:
        words.append("bf16 autocast" if options["student_dtype"] == "bfloat16" else "fp32")
    if "channels_last" in options:
        words.append("channels_last" if options["channels_last"] else "contiguous")
    if "teacher_dtype" in options:
        words.append("bf16" if options["teacher_dtype"] == "bfloat16" else "fp32")
    if options.get("compile"):
        words.append("compiled")
    return ", ".join(words)


def describe(speed: Speed, teacher: bool) -> str:
    """The plan's speed line: ``student float32; teacher bfloat16, channels_last, folded BN``."""
    student = [f"{speed.student_dtype} autocast" if speed.student_dtype != "float32" else "float32"]
    student += ["channels_last"] * speed.channels_last + ["compiled"] * speed.compile
    text = f"student {', '.join(student)}"
    if teacher:
        text += (f"; teacher {speed.teacher_dtype}{', channels_last' * speed.teacher_channels_last}"
                 f"{', folded BN' * speed.teacher_fold_bn}{', compiled' * speed.compiles_teacher}")
    return text
