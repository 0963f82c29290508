"""A run's configuration from files and flags: a YAML/TOML overlay, ``--set`` overrides, the command line's flag
map, value coercion, and the resume rule. The schema (the dataclasses and their validation) is
``fitnets.training.schema``, re-exported here: ``from fitnets.training.config import RunConfig`` works.

``load_config(file, overrides)`` starts from the defaults, overlays the file, then the ``key=value``
overrides (dotted keys, e.g. ``optim.lr=0.01``); an unknown key is an error that names the closest one.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib  # pyright: ignore[reportMissingImports] (installed on 3.10 only)

from fitnets.errors import FitNetsError, closest
from fitnets.training.schema import (
    DataConfig,
    FastConfig,
    HintStageConfig,
    KDConfig,
    OptimConfig,
    RunConfig,
    StoreConfig,
    choices,
    one_of,
    to_dict,
)
from fitnets.training.speed import FAST_TUNED, RESUMABLE_SPEED, SPEED_KEYS

__all__ = ["FAST_TUNED", "FLAG_KEYS", "RESUME_MAY_CHANGE", "DataConfig", "FastConfig", "HintStageConfig", "KDConfig",
           "OptimConfig", "RunConfig", "StoreConfig", "choices", "config_changes", "flag_overrides", "flatten",
           "from_dict", "identity_changes", "load_config", "nest", "one_of", "parse_override", "read_config_file",
           "resume_changes", "to_dict"]


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
# and data order were made with cannot change, nor the folder's name (out, name). What may change is how long it
# trains and how it steps from here (epochs, patience, learning rate and its schedule, max-norm, weight decay),
# where the data is read from, logging, and the speed options (``fitnets.training.speed``).
_SCHEDULE = ("lr", "schedule", "milestones", "gamma", "weight_decay", "max_norm")
RESUME_MAY_CHANGE = frozenset([
    "epochs", "patience", "keep", "log_every", "tensorboard", "hint_stage.epochs", "hint_stage.patience",
    "hint_stage.diagnostics", "data.dir", "data.download", "data.eval_batch_size", *SPEED_KEYS, *RESUMABLE_SPEED,
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
