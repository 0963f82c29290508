"""``fitnets bench speed``: inference speed-up and compression of students over their teacher, measured on
this machine, next to the paper's Table 5 (CIFAR-10, GPU, model and batch size not stated). (``fitnets bench
step``, training throughput, is ``fitnets.tools.bench_step``.)"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fitnets.core.profile import count_macs, count_parameters
from fitnets.core.timing import inference_throughput
from fitnets.models.registry import create_model, model_spec

# Table 5 of the paper: (speed-up, compression) of each FitNet over the CIFAR-10 maxout teacher.
PAPER_TABLE5 = {"paper-fitnet1": (13.36, 36.0), "paper-fitnet2": (4.64, 10.44), "paper-fitnet3": (1.37, 5.62),
                "paper-fitnet4": (1.52, 3.60)}
DEFAULT_PAIRS = {"paper-cifar-teacher": list(PAPER_TABLE5), "paper-mnist-teacher": ["paper-mnist-fitnet"]}


@dataclass
class SpeedRow:
    teacher: str
    student: str
    params: int
    macs: int
    compression: float
    paper_compression: float | None
    images_per_s: float
    speedup: float
    paper_speedup: float | None


def bench_speed(pairs: dict[str, list[str]], batch_size: int = 128, repeats: int = 20,
                device: torch.device | str = "cpu") -> list[SpeedRow]:
    """Each teacher, then each of its students, timed alike (eval mode, warm, median over ``repeats``
    batches). Compression is the teacher's parameters over the student's, counted the paper's way (weights
    only, maxout layers with 2 pieces) where the model has a paper form, else all parameters."""
    rows = []
    for teacher_name, students in pairs.items():
        shape = model_spec(teacher_name).input_shape

        def measure(name, shape=shape):
            spec = model_spec(name)
            model = create_model(name).to(device)
            counted = create_model(name, **spec.paper_kwargs) if spec.paper_kwargs is not None else model
            speed = inference_throughput(model, shape, batch_size, repeats, device=device)
            return (count_parameters(counted, weights_only=spec.paper_kwargs is not None),
                    count_macs(model.to("cpu"), shape), speed)

        t_params, t_macs, t_speed = measure(teacher_name)
        rows.append(SpeedRow(teacher_name, teacher_name, t_params, t_macs, 1.0, None, t_speed, 1.0, None))
        for student in students:
            params, macs, speed = measure(student)
            paper = PAPER_TABLE5.get(student) if teacher_name == "paper-cifar-teacher" else None
            rows.append(SpeedRow(teacher_name, student, params, macs, t_params / params, paper and paper[1],
                                 speed, speed / t_speed, paper and paper[0]))
    return rows


def format_speed_table(rows: list[SpeedRow]) -> str:
    lines = ["| teacher | model | weights (paper count) | MACs as built | compression (paper) | images/s "
             "| speed-up (paper) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        paper_c = f" ({r.paper_compression:.2f})" if r.paper_compression else ""
        paper_s = f" ({r.paper_speedup:.2f})" if r.paper_speedup else ""
        lines.append(f"| {r.teacher} | {r.student} | {r.params:,} | {r.macs / 1e6:.1f}M | {r.compression:.2f}{paper_c} "
                     f"| {r.images_per_s:,.0f} | {r.speedup:.2f}{paper_s} |")
    return "\n".join(lines)
