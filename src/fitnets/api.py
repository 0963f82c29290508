"""``fitnets.distill`` and ``fitnets.train``: your models and your data in the whole engine, in one call.

The same engine as the command line, into the same run folder (``out/name``): both stages, checkpoints and a
bit-identical ``resume``, early stopping, the teacher-output store, DDP under ``torchrun``, ``metrics.jsonl``
and ``results.json`` for ``fitnets report``.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from typing import Any

from torch import nn

from fitnets.errors import FitNetsError, closest
from fitnets.imports import object_name
from fitnets.training.config import FLAG_KEYS, RunConfig, flag_overrides, flatten, load_config, read_config_file
from fitnets.training.fast import fast_overrides
from fitnets.training.loading import user_data
from fitnets.training.run import Run

# What a call has no use for, refused in one line as the command line refuses a flag it does not take: the data
# of both calls is the Dataset objects given; `train` has no teacher (`fitnets train` has none of these flags).
DATA_FLAGS = ("data", "data_dir", "download")
DISTILL_FLAGS = ("teacher", "method", "hint", "guided", "hint_epochs", "regressor_first", "hint_diagnostics",
                 "temperature", "tau_squared")


def _in_python_words(message: str) -> str:
    """A message written for the command line, as a caller of ``distill`` / ``train`` gives the same thing:
    ``--resume RUN_DIR`` → ``resume=True``, ``--name`` → ``name=``, ``--set k=v`` → ``overrides={"k": v}``."""
    message = re.sub(r"--resume(?: \S+)?", "resume=True", message)
    message = re.sub(r"--set '?([\w.]+)=([^'\s;]*?)'?(?=[\s;)]|, |$)", r'overrides={"\1": \2}', message)
    keywords = {*FLAG_KEYS, "fast"}

    def keyword(m: re.Match) -> str:
        name = m[1].replace("-", "_")
        return f"{name}={m[2] or ''}" if name in keywords else m[0]
    return re.sub(r"--([a-z][a-z0-9-]*)(?: ([\d\[\"'][^\s,;)]*))?", keyword, message)


def _python_errors(function):
    """``function``'s one-line errors in the words of its keywords, not the command line's flags."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except FitNetsError as err:
            err.args = (_in_python_words(str(err)),)   # the same error (NonFiniteLoss stays one), in these words
            raise
    return wrapper


def _model_name(model: nn.Module | str, role: str) -> str:
    if isinstance(model, str):
        return model
    if not isinstance(model, nn.Module):
        raise FitNetsError(f"the {role} is a {type(model).__name__}: give an nn.Module or a model name")
    return object_name(model)


def _refuse(call: str, flags: dict[str, Any], overrides: dict[str, Any] | None, unused: tuple[str, ...],
            why: str) -> None:
    """One line for the first of the ``unused`` flags given, as a keyword or as its key in ``overrides``."""
    keys = {key for flag in unused for key in (FLAG_KEYS[flag] if isinstance(FLAG_KEYS[flag], tuple)
                                               else (FLAG_KEYS[flag],))}
    given = [f"{flag}=" for flag in unused if flags.get(flag) is not None]
    given += [f"overrides={{{key!r}: ...}}" for key in overrides or {} if key in keys]
    if given:
        raise FitNetsError(f"fitnets.{call}() cannot use {given[0]}: {why}")


def _config(call: str, config: RunConfig | str | None, overrides: dict[str, Any] | None, flags: dict[str, Any],
            fixed: list[tuple[str, Any]], val) -> RunConfig:
    _refuse(call, flags, overrides, DATA_FLAGS, "the data is the Dataset objects given (train, val=, test=)")
    if val is not None:
        _refuse(call, flags, overrides, ("val_size",), "val= is the validation split; nothing is held out of train")
    fast = flags.pop("fast", None)  # --fast: its fixed keys and mode, under whatever is given explicitly
    unknown = [f for f in flags if f not in FLAG_KEYS]
    if unknown:
        raise FitNetsError(f"unknown flag {unknown[0]!r}.{closest(unknown[0], FLAG_KEYS)} The flags are the command "
                           "line's (fitnets.training.config.FLAG_KEYS); any config key goes in "
                           "overrides={'data.workers': 2}")
    explicit = list(overrides or {})
    if isinstance(config, (str, os.PathLike)):
        explicit += list(flatten(read_config_file(config)))
    pairs = flag_overrides(flags, explicit) + list((overrides or {}).items()) + fixed
    pairs = fast_overrides(fast, explicit + [key for key, _ in pairs]) + pairs
    if isinstance(config, RunConfig):
        return load_config(None, pairs, base=copy.deepcopy(config))  # the caller's config stays as it was
    return load_config(config, pairs)


@_python_errors
def distill(teacher: nn.Module | str, student: nn.Module | str, train, *, val=None, test=None,
            method: str = "fitnet", hint: str | None = None, guided: str | None = None,
            config: RunConfig | str | None = None, overrides: dict[str, Any] | None = None,
            num_classes: int | None = None, resume: bool = False, progress: bool = True,
            **flags) -> dict[str, Any]:
    """Train ``student`` from the trained ``teacher`` on your data — FitNets' two stages by default.

    Args:
        teacher: the trained teacher, an ``nn.Module`` (or a model name as the CLI takes it). It is wrapped
            frozen (eval mode, no gradients); its weights are not changed.
        student: the network to train, an ``nn.Module`` (trained in place; its initial weights are yours, so
            seeds differ only in data order and augmentation) or a registered name.
        train, val, test: map-style ``Dataset`` objects; items ``(input, label)`` or dicts (``pixel_values`` /
            ``labels``; other keys: ``overrides={"data.input_key": ...}``). Without ``val``, ``data.val_size``
            examples of ``train`` are held out; without ``test``, the test figures are the validation split's.
        method: a name of the method table (``fitnets.training.recipes.METHODS``): ``fitnet``, ``kd``, ...
        hint, guided: the teacher's and the student's layers for the hint (module paths, as
            ``named_modules()`` gives them; ``fitnets suggest`` ranks pairs).
        config: a ``RunConfig`` or a config file to start from.
        overrides: dotted config keys, as ``--set`` takes them: ``{"data.workers": 2, "optim.lr": 0.01}``.
        num_classes: the number of classes (default: counted from the training labels).
        resume: continue the run in ``out/name`` from its last checkpoint (a bit-identical student).
        **flags: the command line's flags as keywords: ``epochs``, ``hint_epochs``, ``lr``, ``batch_size``,
            ``seed``, ``out``, ``name``, ``fast=True`` (or ``"retune"``: the speed options timed on your models
            at the start, ``fitnets.training.fast``), ...

    Returns:
        The results dict of ``Run.execute()`` (``test_acc``, ``teacher_agreement``, per-stage summaries...),
        also written to ``out/name/results.json``.

    Raises:
        FitNetsError: a mistake in the arguments or the data, in one line.

    Example:
        >>> results = fitnets.distill(teacher, student, train_set, hint="layer2", guided="block3",
        ...                           epochs=6, hint_epochs=2, name="my-fitnet")
    """
    fixed = [("method", method), ("teacher", _model_name(teacher, "teacher")),
             ("student", _model_name(student, "student")), ("hint", hint), ("guided", guided)]
    config = _config("distill", config, overrides, flags, [(k, v) for k, v in fixed if v is not None], val)
    return _run(config, train, val, test, num_classes, resume, progress, student, teacher)


@_python_errors
def train(student: nn.Module | str, train, *, val=None, test=None, config: RunConfig | str | None = None,
          overrides: dict[str, Any] | None = None, num_classes: int | None = None, resume: bool = False,
          progress: bool = True, **flags) -> dict[str, Any]:
    """Train ``student`` with cross-entropy alone (standard backprop; e.g. a teacher). Arguments as
    ``distill``'s."""
    _refuse("train", flags, overrides, DISTILL_FLAGS, "it trains with cross-entropy alone, with no teacher "
            "(fitnets.distill takes it)")
    fixed = [("method", "ce"), ("student", _model_name(student, "student"))]
    config = _config("train", config, overrides, flags, fixed, val)
    return _run(config, train, val, test, num_classes, resume, progress, student, None)


def _run(config: RunConfig, train, val, test, num_classes, resume, progress, student, teacher) -> dict[str, Any]:
    config.data.name = object_name(train)
    run = Run(config, progress=progress, student=student if isinstance(student, nn.Module) else None,
              teacher=teacher if isinstance(teacher, nn.Module) else None)
    data = user_data(config, run.device, train, test, val, num_classes)
    return run.execute(resume=resume, data=data)
