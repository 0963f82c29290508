"""What a run folder records so that every other command reads it without rebuilding its models.

A run made by ``fitnets.distill`` on ``nn.Module`` objects names its models ``python:module.Class``: nothing can
build them again. So the run measures, while it holds them, what ``report`` and ``export`` need: the input
shape it fed, the student's and the teacher's parameters and multiply-accumulates, how many examples each split
held, and the evaluation view (crop, mean, std) its test accuracy was measured on — and, at its end, both
models' inference speed. ``record.json`` holds them from the start of the run (a resume checks its data against
it); ``results.json`` repeats them at the end.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from torch import nn

from fitnets.core.profile import count_macs
from fitnets.core.timing import inference_throughput
from fitnets.errors import FitNetsError

log = logging.getLogger(__name__)

RECORD = "record.json"


def eval_view(config, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """How an input is prepared for evaluation, from raw pixels: ``centre_crop`` (the share of the image the
    centre crop keeps, resized to ``input_shape``'s H × W; ``None``: the image as it is), then pixels / 255,
    then ``(x − mean) / std`` per channel when ``mean`` is set."""
    view = config.data.eval_view()
    return {"input_shape": list(input_shape), "centre_crop": view.crop if view is not None else None,
            "pixels": "uint8 / 255", "mean": config.data.mean, "std": config.data.std}


def describe(config, student: nn.Module, teacher: nn.Module | None, input_shape: tuple[int, ...],
             examples: dict[str, int]) -> dict[str, Any]:
    """The record of a run: sizes and costs measured on the models it holds, the data's sizes and the
    evaluation view."""
    record: dict[str, Any] = {"input_shape": list(input_shape),
                              "parameters": sum(p.numel() for p in student.parameters()),
                              "macs": _macs(student, input_shape, "student"), "examples": examples,
                              "eval_view": eval_view(config, input_shape)}
    if teacher is not None:
        record["teacher_parameters"] = sum(p.numel() for p in teacher.parameters())
        record["teacher_macs"] = _macs(teacher, input_shape, "teacher")
    return record


SPEED_BATCH = 64


def measured_speed(student: nn.Module, teacher: nn.Module | None, input_shape: tuple[int, ...],
                   device) -> dict[str, Any]:
    """Inference images per second of the student and the teacher, timed alike (``inference_throughput``, batch
    ``SPEED_BATCH``) where the run ran: for a run on objects, which report cannot build again to time."""
    timed = {"device": str(device), "batch_size": SPEED_BATCH,
             "student_images_per_s": inference_throughput(student, input_shape, SPEED_BATCH, 5, device=device)}
    if teacher is not None:
        timed["teacher_images_per_s"] = inference_throughput(teacher, input_shape, SPEED_BATCH, 5, device=device)
    return timed


def _macs(model: nn.Module, shape: tuple[int, ...], role: str) -> int | None:
    """``count_macs``, or ``None`` (said once) for a model whose forward cannot take one zero example."""
    try:
        return count_macs(model, shape)
    except Exception as err:  # a user's model may refuse a zero input in any way; its cost is then unknown
        log.info("the %s's multiply-accumulates are not recorded: one zero input of shape %s fails (%s)", role,
                 list(shape), type(err).__name__)
        return None


def read_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run folder's record, ``None`` for a folder made before runs recorded one (or a damaged record)."""
    path = Path(run_dir) / RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    (Path(run_dir) / RECORD).write_text(json.dumps(record, indent=2))


def check_same_data(run_dir: Path, train_examples: int, resume_flag: str) -> None:
    """Refuse to resume a run on other data than it started with: the epochs' order and the store's keys are
    drawn over the training examples, so a set of another length would continue a different run silently."""
    saved = read_record(run_dir)
    if saved is None:
        return
    before, now = saved.get("examples", {}).get("train"), train_examples
    if before is not None and before != now:
        raise FitNetsError(f"the training set has {now:,} examples but the run in {run_dir} started with "
                           f"{before:,}: {resume_flag} continues a run on the same data; start a new run for this "
                           "data (another name)")
