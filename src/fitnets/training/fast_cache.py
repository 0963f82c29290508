"""``--fast``'s cache of measured choices, ``$FITNETS_CACHE/fast.json``: one entry per part of a run's step (the
student's step, the teacher's forward), keyed by what the measurement depends on (``fingerprint``). A damaged
file, or a damaged entry in it, is never an error: it is measured again, with a warning, and written over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fitnets.training.cache import cache_root
from fitnets.training.machine import device_name
from fitnets.training.speed import TUNED_VALUES

log = logging.getLogger("fitnets.training.fast")

SEARCH = 1             # the search's version, part of the cache key: a new search measures anew


def cache_file() -> Path:
    return cache_root() / "fast.json"


def read_cache(path: Path) -> dict[str, Any]:
    """The cached choices; a damaged file, or a damaged entry, is measured over, with a warning, never an error."""
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text()).get("entries", {})
        if not isinstance(entries, dict):
            raise ValueError("no entries")
    except (OSError, ValueError, AttributeError) as err:
        log.warning("--fast: the cache %s is unreadable (%s); measuring again and rewriting it", path, err)
        return {}
    kept = {}
    for key, entry in entries.items():
        problem = damage(entry)
        if problem:
            log.warning("--fast: the cache %s has a damaged entry (%s); that part is measured again and its entry "
                        "rewritten", path, problem)
        else:
            kept[key] = entry
    return kept


def damage(entry: Any) -> str | None:
    """What is wrong with a cache entry, or ``None`` when it is whole: an object with the options chosen (known
    keys, values among those ``--fast`` tries), their speed-up and the images/s of each candidate."""
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, not an object"
    options, rates = entry.get("options"), entry.get("rates")
    if not isinstance(options, dict):
        return "no options"
    for key, value in options.items():
        if key not in TUNED_VALUES or value not in TUNED_VALUES[key]:
            return f"{key} = {value!r} is not a choice --fast makes"
    if not isinstance(entry.get("speedup"), (int, float)) or isinstance(entry.get("speedup"), bool):
        return "no speed-up"
    if not isinstance(rates, dict) or not rates or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in rates.values()):
        return "no images/s per candidate"
    return None


def write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` under ``key``, atomically (a new file renamed over the old: a reader never sees half)."""
    entries = read_cache(path) | {key: entry}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": 1, "entries": entries}, indent=1))
        os.replace(tmp, path)
    except OSError as err:
        log.warning("--fast: could not write the cache %s (%s); the next run measures again", path, err)


def fingerprint(part: str, model: nn.Module, x: torch.Tensor, settings: dict[str, Any]) -> str:
    """The cache key of one part's measurement: the architecture (the module tree as printed, each parameter's
    and buffer's name, shape and dtype), the batch's shape and dtype, the device by name, the threads, the torch
    version, the search's version and the ``settings`` that shape the candidates."""
    arch = [(n, list(t.shape), str(t.dtype)) for n, t in (*model.named_parameters(), *model.named_buffers())]
    key = {"search": SEARCH, "part": part, "module": repr(model), "tensors": arch, "batch": list(x.shape),
           "input": str(x.dtype), "device": device_name(x.device), "threads": torch.get_num_threads(),
           "torch": torch.__version__, **settings}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]


