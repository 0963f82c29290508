"""``--fast``: the speed options chosen by measuring them, at the start of a run, on the run's own models, batch
and device — in the spirit of ``cudnn.benchmark`` — so that ``--fast`` is never slower than the defaults.

Why measure: the same option helps one pair and hurts another. On this project's 2-core CPU (AVX-512 BF16, no
AMX) the fixed preset that ``--fast`` used to be (bf16 teacher, channels_last and compiled student) made the
paper's small MNIST student 0.76–0.87× as fast as the plain fp32 step, and resnet56 → resnet20 1.23–1.32× faster
(docs/results.md).

What is measured, each a few steps through the engine's own ``train_step`` (``tune``):

* the student's step (forward, backward, optimizer update) in fp32 and under bf16 autocast, contiguous and
  channels_last (``channels_last``, ``student_dtype``): up to 4 candidates;
* the teacher's forward in fp32 and in bf16 (``teacher_dtype``): 2 candidates, when the method has a teacher;
* ``torch.compile`` only where it can pay off within the run (``compile_pays_off``).

The candidates of a part are timed in interleaved rounds, and each one's speed-up over the defaults is the median
over the rounds of the per-round ratio, so that a slow spell of a shared machine lands on both sides of a ratio.
A candidate replaces the defaults only if it is at least ``MARGIN`` (5%) faster: two measurements of the same
code on this machine differ by up to 5% (docs/results.md, the bench's A/B), so a smaller lead is noise. The
defaults are always a candidate, so the choice is never slower than them by more than that noise.

The choice is cached per (models, batch, input, device, threads, torch version) in ``$FITNETS_CACHE/fast.json``
(``--fast=retune`` measures again), resolved into the run's config before anything trains (a resume reuses the
recorded choice and never measures), and under ``torchrun`` rank 0 measures and every rank applies its choice.
Explicit flags and ``--set`` keys given with ``--fast`` win: the tuner leaves those keys alone (``fast.keep``).
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fitnets.core.inputs import InputFormat
from fitnets.errors import FitNetsError
from fitnets.training import distributed
from fitnets.training.config import RunConfig
from fitnets.training.engine import build_optimizer, train_step
from fitnets.training.fast_cache import cache_file, fingerprint, read_cache, write_cache
from fitnets.training.machine import Contention, compiler_available, native_bf16, warn_if_busy
from fitnets.training.speed import FAST_TUNED, FIXED, STUDENT_KEYS, TEACHER_KEYS, TUNED_VALUES, Speed, label, lowered
from fitnets.training.steps import CEStep
from fitnets.training.teacher_outputs import frozen_teacher

log = logging.getLogger(__name__)

UNRESOLVED = ("tune", "retune")  # fast.mode before the choice is made; "tuned" after, "off" without --fast
MODES = {True: "tune", "tune": "tune", "on": "tune", "retune": "retune"}  # what --fast / fast= accept
MARGIN = 0.05          # a candidate must be this much faster than the defaults to be chosen (measurement noise)
ROUNDS, STEPS, WARMUP = 4, 1, 1  # interleaved rounds of STEPS timed steps per candidate, after WARMUP untimed ones
COMPILE_COST_S = 60.0  # a torch.compile of a forward and backward, roughly (CPU here: 20–36 s for the MNIST student)


def preset_options(device: torch.device) -> list[tuple[str, Any]]:
    """The fixed preset ``--fast`` was before it measured, chosen by hardware alone (bf16 teacher and stored
    outputs, channels_last student, bf16 autocast where native, compile where a compiler works): ``fitnets bench
    step`` times it beside the measured choice."""
    options: list[tuple[str, Any]] = [("teacher_dtype", "bfloat16"), *FIXED.items(), ("channels_last", True)]
    if native_bf16(device):
        options.append(("student_dtype", "bfloat16"))
    if compiler_available(device):
        options.append(("compile", True))
    return options


def fast_mode(value: Any) -> str | None:
    """``--fast`` / ``fast=`` as a mode: ``"tune"`` (``True``, ``"tune"``), ``"retune"``, or ``None`` (off)."""
    if value in (None, False, "off"):
        return None
    if isinstance(value, (bool, str)) and value in MODES:
        return MODES[value]
    raise FitNetsError(f"bad --fast value {value!r}: give --fast (measure, or reuse the cached choice) or "
                       "--fast=retune (measure again)")


def fast_overrides(value: Any, explicit: Iterable[str] = ()) -> list[tuple[str, Any]]:
    """``--fast`` as config overrides, to go before the flags and ``--set`` keys so that those win: the fixed
    part, the mode, and the measured keys among ``explicit`` (the keys given) as ``fast.keep``."""
    mode = fast_mode(value)
    if mode is None:
        return []
    explicit = set(explicit)
    return [*FIXED.items(), ("fast.mode", mode), ("fast.keep", [k for k in FAST_TUNED if k in explicit])]


# ---------------------------------------------------------------- the choice

@dataclass
class Choice:
    """What ``--fast`` chose for a run: the config keys it sets, each part's speed-up over the defaults and
    throughput per candidate (images/s), as measured now or when cached."""

    options: dict[str, Any] = field(default_factory=dict)
    speedups: dict[str, float] = field(default_factory=dict)  # part → chosen over defaults (1.0: defaults kept)
    rates: dict[str, dict[str, float]] = field(default_factory=dict)  # part → candidate label → images/s
    seconds: float = 0.0     # spent measuring now (0: all from the cache)
    cached: bool = False     # every part came from the cache
    note: str = ""           # why compile was or was not searched

    def summary(self) -> str:
        """Each part's chosen options and speed-up: ``student bf16 autocast, contiguous (1.21× the defaults)``."""
        parts = []
        for part, speedup in self.speedups.items():
            keys = STUDENT_KEYS if part == "student" else TEACHER_KEYS
            chosen = label({k: v for k, v in self.options.items() if k in keys}) or "defaults"
            parts.append(f"{part} {chosen} ({speedup:.2f}× the defaults)")
        return "; ".join(parts) or "nothing to choose (every option set)"

    def describe(self) -> str:
        """The one log line: what was chosen, by how much, at what cost."""
        how = "cached choice" if self.cached else f"measured in {self.seconds:.1f} s"
        return f"--fast: {self.summary()}; {how}" + (f"; {self.note}" if self.note else "")


def apply(config: RunConfig, choice: Choice) -> RunConfig:
    """Write the choice into ``config``, resolved: ``fast.mode`` becomes ``tuned``, so it is never measured
    again for this run (its saved config and checkpoint record it)."""
    for key, value in choice.options.items():
        setattr(config, key, value)
    config.fast.mode = "tuned"
    return config


def adopt(config: RunConfig, saved: RunConfig) -> RunConfig:
    """A resume asked for ``--fast``: keep the speed options the run recorded (its saved config), never measure
    again, so that the resumed student is bit-identical to an uninterrupted run's."""
    for key in [*FAST_TUNED, *FIXED]:
        if key not in config.fast.keep:
            setattr(config, key, getattr(saved, key))
    config.fast.mode = saved.fast.mode
    log.info("%s", kept_on_resume(saved))
    return config


def kept_on_resume(saved: RunConfig) -> str:
    """What ``--fast`` does on a resume of a run saved with ``saved``: keeps its speed options, measures nothing."""
    how = "chosen by --fast" if saved.fast.mode == "tuned" else "it did not use --fast"
    return f"resuming with the speed options the run recorded ({how}): --fast measures only at a run's start"


# ---------------------------------------------------------------- measuring

def time_rounds(runners: dict[str, Callable[[], Any]], clock: Callable[[], float], sync: Callable[[], None],
                rounds: int = ROUNDS, steps: int = STEPS, warmup: int = WARMUP) -> dict[str, list[float]]:
    """Seconds per round of ``steps`` calls of each runner, the runners taken in turn in each round (after
    ``warmup`` untimed calls each: memory allocated, kernels chosen, graphs compiled)."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            sync()
            start = clock()
            for _ in range(steps):
                run()
            sync()
            times[name].append(max(clock() - start, 1e-9))
    return times


def pick(times: dict[str, list[float]], default: str, margin: float = MARGIN) -> tuple[str, dict[str, float]]:
    """The fastest candidate if it beats ``default`` by more than ``margin``, else ``default``; and each
    candidate's speed-up over ``default``: the median over rounds of the per-round ratio of their times."""
    speedups = {name: statistics.median(d / t for d, t in zip(times[default], ts, strict=True))
                for name, ts in times.items()}
    best = max(speedups, key=lambda name: speedups[name])
    return (best if speedups[best] >= 1 + margin else default), speedups


def compile_pays_off(device: torch.device, run_seconds: float | None) -> tuple[bool, str]:
    """Whether ``torch.compile`` is worth a candidate, and why. It is left out on CPUs: there a compile took
    20–36 s for the MNIST student and made its step slower, and on top of bf16 autocast it sped resnet20's up by
    3% (docs/results.md), under the margin. On a GPU it is searched when the run is long enough for a compile
    (``COMPILE_COST_S``) to cost at most the ``MARGIN`` it must win: a run of ≥ 20 minutes."""
    if device.type == "cpu":
        return False, "compile not searched on a CPU (it did not pay off here)"
    if not compiler_available(device):
        return False, "compile not searched: no compiler"
    if run_seconds is None or run_seconds * MARGIN < COMPILE_COST_S:
        return False, "compile not searched: the run is too short for a compile to pay off"
    return True, "compile searched"


def _sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _student_runner(config: RunConfig, student: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    options: dict[str, Any]) -> Callable[[], Any]:
    """A copy of the student, trained a step per call through the engine's ``train_step`` with ``options``."""
    model = copy.deepcopy(student).train()
    inputs = InputFormat(channels_last=options["channels_last"])
    inputs.apply_to(model)
    step = CEStep(model, torch.compile(model) if options.get("compile") else None, config.logits_key)
    optimizer = build_optimizer([{"params": [p for p in model.parameters() if p.requires_grad]}], config.optim)
    batch = (x, y, torch.arange(len(x), device=x.device))
    return lambda: train_step(step, optimizer, batch, 0, inputs, lowered(options["student_dtype"]))


def _teacher_runner(config: RunConfig, teacher: nn.Module, x: torch.Tensor,
                    options: dict[str, Any]) -> Callable[[], Any]:
    """A copy of the teacher, wrapped as the run wraps it with ``options``: one forward per call."""
    frozen = frozen_teacher(copy.deepcopy(teacher), Speed.of(config, **{"compile": False, **options}),
                            config.teacher_logits_key)
    return lambda: frozen(x)


def _candidates(config: RunConfig, keys: tuple[str, ...], values: dict[str, tuple]) -> list[dict[str, Any]]:
    """Every combination of ``values`` for the ``keys`` the user did not set, the others as configured; the
    config's own (the defaults) first."""
    combos = [{}]
    for key in keys:
        free = key not in config.fast.keep
        combos = [{**c, key: v} for c in combos for v in (values[key] if free else (getattr(config, key),))]
    current = {key: getattr(config, key) for key in keys}
    return [current] + [c for c in combos if c != current]


# ---------------------------------------------------------------- the tuner

@dataclass
class _Part:
    """One measured part of a run's training: the student's step, or the teacher's forward."""

    name: str
    key: str                          # its cache key
    candidates: list[dict[str, Any]]  # the options as configured (the defaults) first
    runner: Callable[[dict[str, Any]], Callable[[], Any]]


def _parts(config: RunConfig, student: nn.Module, teacher: nn.Module | None, x: torch.Tensor,
           y: torch.Tensor) -> list[_Part]:
    values = TUNED_VALUES
    kept = {k: getattr(config, k) for k in config.fast.keep}
    parts = [_Part("student", fingerprint("student", student, x, {"optim": config.optim.name, "kept": kept}),
                   _candidates(config, STUDENT_KEYS[:2], values), lambda o: _student_runner(config, student, x, y, o))]
    if teacher is not None:
        settings = {"channels_last": config.teacher_channels_last, "fold_bn": config.teacher_fold_bn, "kept": kept}
        parts.append(_Part("teacher", fingerprint("teacher", teacher, x, settings),
                           _candidates(config, TEACHER_KEYS, values), lambda o: _teacher_runner(config, teacher, x, o)))
    return [part for part in parts if len(part.candidates) > 1]  # every key of a part set by the user: nothing to do


def _measure(part: _Part, clock: Callable[[], float], sync: Callable[[], None], batch: int,
             compiles: Callable[[float], bool]) -> dict[str, Any]:
    """Time the part's candidates; its cache entry: the options chosen, their speed-up, images/s per candidate.
    ``compiles(step_seconds)`` says, from the defaults' measured step, whether a compile could pay off."""
    labels = {label(c): c for c in part.candidates}
    default = next(iter(labels))
    times = time_rounds({label: part.runner(c) for label, c in labels.items()}, clock, sync)
    chosen, speedups = pick(times, default)
    rates = {label: batch * STEPS / statistics.median(ts) for label, ts in times.items()}
    options, speedup = labels[chosen], speedups[chosen]
    searched = part.name == "student" and compiles(statistics.median(times[default]) / STEPS)
    if searched:  # the best eager candidate against itself compiled
        compiled = {**options, "compile": True}
        extra = time_rounds({chosen: part.runner(options), "compiled": part.runner(compiled)}, clock, sync)
        winner, gain = pick(extra, chosen)
        rates[label(compiled)] = rates[chosen] * gain["compiled"]
        if winner == "compiled":
            options, speedup = compiled, speedup * gain["compiled"]
    return {"options": options, "speedup": speedup, "rates": rates, "compile_searched": searched}


CLOCK = time.perf_counter  # what times the candidates (tests put a fake one here)


def tune(config: RunConfig, student: nn.Module, teacher: nn.Module | None, x: torch.Tensor, num_classes: int,
         run_steps: int | None = None, retune: bool = False, clock: Callable[[], float] | None = None,
         cache: Path | None = None) -> Choice:
    """The speed options for a run of ``config`` training ``student`` (from ``teacher``'s outputs) on batches
    like ``x``, for ``run_steps`` steps: each part's cached choice, or (``retune``, or none cached) measured on
    copies of the models with ``clock`` (default ``CLOCK``), the global random state untouched. Under
    ``torchrun`` rank 0 measures and the others receive its choice."""
    choice: Choice | None = None
    if distributed.current().is_main:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            choice = _tune(config, student, teacher, x, num_classes, run_steps, retune, clock or CLOCK,
                           cache or cache_file())
    choice = distributed.broadcast_object(choice)
    assert choice is not None  # rank 0 measured or read it
    return choice


def _tune(config: RunConfig, student: nn.Module, teacher: nn.Module | None, x: torch.Tensor, num_classes: int,
          run_steps: int | None, retune: bool, clock: Callable[[], float], path: Path) -> Choice:
    started = time.perf_counter()
    y = torch.randint(0, num_classes, (len(x),), generator=torch.Generator().manual_seed(0)).to(x.device)
    parts = _parts(config, student, teacher, x, y)
    def compiles(step_seconds: float) -> bool:
        return compile_pays_off(x.device, run_steps * step_seconds if run_steps else None)[0]

    cached = {} if retune else read_cache(path)
    todo = [p for p in parts if p.key not in cached or (p.name == "student" and _stale(cached[p.key], x, run_steps))]
    if todo:
        calls = sum(len(p.candidates) for p in todo) * (WARMUP + ROUNDS * STEPS)
        log.info("--fast: timing %s on this run's models, batch %d (%d steps or forwards in all; seconds for small "
                 "models, minutes for large ones on a CPU)", " and ".join(
                     f"{len(p.candidates)} options of the {p.name}'s {'step' if p.name == 'student' else 'forward'}"
                     for p in todo), len(x), calls)
    contention = Contention(clock) if todo else None  # only what is timed now can be disturbed
    choice, entries = Choice(cached=not todo), {}
    for part in parts:
        if part in todo:
            entries[part.key] = _measure(part, clock, _sync(x.device), len(x), compiles)
            write_cache(path, part.key, entries[part.key])
        entry = entries.get(part.key) or cached[part.key]
        choice.options |= entry["options"]
        choice.speedups[part.name] = entry["speedup"]
        choice.rates[part.name] = entry["rates"]
    choice.seconds = time.perf_counter() - started if todo else 0.0
    if contention is not None:
        warn_if_busy(x.device, contention)
    if "compile" not in config.fast.keep:
        searched = any(e.get("compile_searched") for e in (*entries.values(), *(cached.get(p.key, {}) for p in parts)))
        choice.note = "compile searched" if searched else compile_pays_off(x.device, None)[1]
    log.info("%s", choice.describe())
    return choice


def _stale(entry: dict[str, Any], x: torch.Tensor, run_steps: int | None) -> bool:
    """Whether a cached student entry must be measured again: it left compile out, and this run is long enough
    (by the defaults' step time the entry recorded) for a compile to pay off."""
    if entry.get("compile_searched") or not run_steps or not entry.get("rates"):
        return False
    step_seconds = len(x) / next(iter(entry["rates"].values()))  # the first candidate: the defaults
    return compile_pays_off(x.device, run_steps * step_seconds)[0]


def plan(config: RunConfig, student: nn.Module, teacher: nn.Module | None, x: torch.Tensor) -> str:
    """What ``--fast`` will do at a fresh run's start, for ``--dry-run``: reuse the cached choice, or measure
    (which candidates). (A resume keeps the run's recorded options: ``kept_on_resume``.)"""
    y = torch.zeros(len(x), dtype=torch.long, device=x.device)
    parts = _parts(config, student, teacher, x, y)
    cached = {} if config.fast.mode == "retune" else read_cache(cache_file())
    if parts and all(p.key in cached for p in parts):
        choice = Choice(cached=True)
        for part in parts:
            choice.options |= cached[part.key]["options"]
            choice.speedups[part.name] = cached[part.key]["speedup"]
        return f"the choice cached for these models and this machine ({cache_file()}): {choice.summary()}"
    what = "; ".join(f"the {p.name}'s {'step' if p.name == 'student' else 'forward'} as "
                     f"{' / '.join(label(c) for c in p.candidates)}" for p in parts)
    return (f"measures at the start ({what or 'nothing: every option is set'}, batch {len(x)}), then keeps the "
            f"fastest if ≥ {MARGIN:.0%} faster than the defaults (the speed line above); "
            f"{compile_pays_off(x.device, None)[1]}")
