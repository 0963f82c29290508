"""One trial of a frontier — a (candidate, method, seed) — as an ordinary run folder of the engine.

The folder is named by the trial alone (``trials/<candidate>/<method>-seed<N>``), so whoever runs the trial —
this worker, another one, a rerun after a kill — continues the same run from its last checkpoint with the
engine's resume, and the student is bit-identical to one trained without interruption. A finished folder
(``results.json``) is read, never trained again.

The teacher is counted: every image that goes through it (a full forward or one cut at the hint) adds to
``teacher_images`` in ``trial.json`` beside the run's own files — ``training`` (the forwards a training step
asked for, through the teacher-output sources) and ``evaluation`` (validation, test agreement, shape checks).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from fitnets.tools.frontier.candidates import Candidate, build, with_classes
from fitnets.training.config import RunConfig

log = logging.getLogger(__name__)

TRIAL_FILE = "trial.json"


@dataclass
class TrialData:
    """Where a trial's examples come from: the config's dataset (``None`` here), or your ``Dataset`` objects
    (``fitnets.frontier`` in Python), with ``num_classes`` when known."""

    train: Any = None
    val: Any = None
    test: Any = None
    num_classes: int | None = None


@dataclass
class TrialSpec:
    """What a trial trains: ``config`` is the family's run config (every ``distill`` flag), made this trial's by
    ``config_for``."""

    candidate: Candidate
    method: str
    seed: int
    guided: str | None = None     # the student's guided layer (FitNets), as the family chose it
    extra: dict[str, Any] = field(default_factory=dict)  # config keys over the family's (the screen's length)


def run_dir(folder: Path, candidate: Candidate, method: str, seed: int) -> Path:
    return folder / "trials" / candidate.slug / f"{method}-seed{seed}"


def config_for(base: RunConfig, spec: TrialSpec, folder: Path, num_classes: int | None) -> RunConfig:
    """The trial's run config: the family's, with its student, method, seed and folder — and the teacher-output
    store on for un-augmented data too, so that every run of the family reads the teacher's logits from one
    store (the teacher paid once)."""
    c = copy.deepcopy(base)
    c.method, c.seed = spec.method, spec.seed
    c.student = spec.candidate.name
    c.model_args = with_classes(spec.candidate, num_classes)
    if spec.guided:
        c.guided = spec.guided
    c.store.unaugmented = True
    for key, value in spec.extra.items():
        section, _, name = key.rpartition(".")
        setattr(getattr(c, section) if section else c, name, value)
    path = run_dir(folder, spec.candidate, spec.method, spec.seed)
    c.out, c.name = str(path.parent), path.name
    return c


# The teacher-output sources are the one place a training step gets the teacher's outputs from (live, cached or
# stored): a forward called from inside them is a training forward; any other (validation, the test set's
# teacher agreement, the dry runs that find shapes) is an evaluation forward.
_TRAINING_SOURCES = ("fitnets.training.teacher_outputs", "fitnets.training.store")


class _Counter:
    """A forward pre-hook that counts the images going into the teacher, for training and for evaluation."""

    def __init__(self):
        self.images = {"training": 0, "evaluation": 0}

    def __call__(self, module: nn.Module, inputs: tuple) -> None:
        if not inputs or not hasattr(inputs[0], "shape") or inputs[0].dim() == 0:
            return
        frame, kind = sys._getframe(1), "evaluation"
        while frame is not None:
            if str(frame.f_globals.get("__name__", "")).startswith(_TRAINING_SOURCES):
                kind = "training"
                break
            frame = frame.f_back
        self.images[kind] += int(inputs[0].shape[0])


def _record(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / TRIAL_FILE).read_text())
    except (OSError, ValueError):
        return {}


def run_trial(base: RunConfig, spec: TrialSpec, folder: Path, teacher: nn.Module | str | None,
              data: TrialData, progress: bool = False) -> dict[str, Any]:
    """Train the trial (or continue it from its checkpoint, or read it when finished); returns its
    ``results.json`` with the trial's ``teacher_images`` and ``wall_s`` (summed over its attempts).

    Args:
        base: the family's run config.
        teacher: the trained teacher as an object, or ``None`` to load it by the config's name (each trial loads
            its own copy: a speed option that converts the teacher in place stays inside the trial).
    """
    from fitnets.training.loading import ModelRef, load_model, user_data
    from fitnets.training.run import Run

    config = config_for(base, spec, folder, data.num_classes)
    path = run_dir(folder, spec.candidate, spec.method, spec.seed)
    if (path / "results.json").is_file():
        return {**json.loads((path / "results.json").read_text()), **_record(path)}
    record = _record(path)
    counter = _Counter()
    module = None
    if config.method != "ce":
        if not isinstance(teacher, nn.Module):
            teacher = load_model(ModelRef.parse(str(config.teacher)), trained=True, **config.teacher_args)
        module = teacher
        module = copy.deepcopy(module)
    student = build(spec.candidate, data.num_classes) if spec.candidate.ref.weights or spec.candidate.module else None
    resume = (path / "last.safetensors").is_file()
    started = time.perf_counter()
    handle = module.register_forward_pre_hook(counter) if module is not None else None
    try:
        run = Run(config, progress=progress, student=student, teacher=module)
        if data.train is not None:
            loaded = user_data(config, run.device, data.train, data.test, data.val, data.num_classes)
        else:
            loaded = run.load_data()
        log.info("trial %s %s seed %d%s", spec.candidate.label, spec.method, spec.seed,
                 " (resumed from its checkpoint)" if resume else "")
        results = run.execute(resume=resume, data=loaded)
    finally:
        if handle is not None:
            handle.remove()
        before = record.get("teacher_images", {})
        record = {"teacher_images": {k: before.get(k, 0) + v for k, v in counter.images.items()},
                  "wall_s": record.get("wall_s", 0.0) + time.perf_counter() - started,
                  "attempts": record.get("attempts", 0) + 1, "worker": f"{socket.gethostname()} {os.getpid()}"}
        if path.is_dir():
            (path / TRIAL_FILE).write_text(json.dumps(record, indent=1))
    return {**results, **record}
