"""Checkpoints: safetensors files with a JSON metadata header, written atomically.

A run's checkpoint holds the student (``model.*``), the regressor during stage 1 (``regressor.*``) and the
optimizer's tensors (``optim.*``); its metadata holds the epoch, stage, config and optimizer's plain values.
The student's tensors are exactly its ``state_dict()``: ``load_weights`` puts them into the plain
architecture with no extra keys.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from fitnets.errors import FitNetsError

_META_KEY = "fitnets"


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and ``meta`` to ``path`` atomically: a reader sees the old file or the new one, never
    a half-written one, even when the process is killed mid-write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as err:  # a full disk, a read-only or vanished folder: the previous file
        tmp.unlink(missing_ok=True)            # is untouched (safetensors reports its own write errors by type)
        cause = err.strerror if isinstance(err, OSError) and err.strerror else str(err).rsplit("I/O error: ", 1)[-1]
        kept = "; the previous checkpoint is intact" if path.exists() else ""
        fix = "free space there (or make it writable)"
        if (path.parent / "config.yaml").is_file():  # a run folder: it continues from its last checkpoint, if any
            fix += (f", then continue with --resume {path.parent}" if (path.parent / "last.safetensors").is_file()
                    else ", then start the run again (no epoch had been saved: there is nothing to resume)")
        raise FitNetsError(f"cannot write {path}: {cause}{kept}; {fix}") from None


def load_checkpoint(path: str | os.PathLike, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by ``save_checkpoint`` (or any safetensors file: its metadata is then ``{}``); with
    ``tensors=False`` only its header (the metadata; no tensors, ``{}``), which costs nothing for any size.

    Raises:
        FitNetsError: the file is missing, truncated or not a safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise FitNetsError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
        body = load_file(str(path)) if tensors else {}
        meta = json.loads(raw) if raw else {}
    except Exception as err:  # safetensors raises several types for damaged files; all mean the same here
        raise FitNetsError(f"checkpoint {path} is corrupt or truncated, or not a safetensors file "
                           f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}); "
                           "use an earlier checkpoint or retrain") from None
    return body, meta


def model_tensors(tensors: dict[str, torch.Tensor], prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The tensors under ``prefix`` with the prefix removed, or all of them for a plain weights file."""
    scoped = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return scoped or tensors


def load_state(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(state)`` with one clear line when the weights do not fit the architecture."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {'; '.join(wrong[:2])})")
        raise FitNetsError(f"weights in {source} do not match {type(module).__name__}: "
                           + ", ".join(parts) + ". Is it the right architecture and num_classes?")
    module.load_state_dict(state)


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights in ``path``: a safetensors file (plain, or a run checkpoint's student), or a PyTorch
    ``state_dict`` saved with ``torch.save`` (read with ``weights_only=True``: tensors only, no code runs)."""
    try:
        tensors, _ = load_checkpoint(path)
        return model_tensors(tensors)
    except FitNetsError as not_safetensors:
        if not Path(path).is_file():
            raise
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:  # weights_only refuses any class it does not know
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
            if found is None:
                raise not_safetensors from None
            raise FitNetsError(f"{path} holds a pickled Python object ({found[1]}), not only tensors — a whole model "
                               "saved with torch.save(model)? Weights are read without unpickling objects (that "
                               "runs their code): save torch.save(model.state_dict(), PATH) instead") from None
        except Exception:
            raise not_safetensors from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a common training-loop wrapper
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FitNetsError(f"{path} holds a {type(state).__name__}, not weights: expected a safetensors file or a "
                           "state_dict (names → tensors) saved with torch.save")
    return state


def load_weights(module: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights (see ``read_weights``) into ``module``."""
    load_state(module, read_weights(path), str(path))
    return module


# The optimizer's state_dict mixes tensors (moments, step counts) with plain values (hyper-parameters):
# the tensors go into the safetensors body, the rest into the JSON metadata.

def optimizer_to_flat(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, plain = {}, {}
    for idx, param_state in state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                plain.setdefault(str(idx), {})[key] = value
    return tensors, {"state": plain, "param_groups": state["param_groups"]}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in plain["state"].items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": plain["param_groups"]}
