"""``fitnets bench speed``: inference speed-up and compression of students over their teacher, measured on
this machine, next to the paper's Table 5 (CIFAR-10, GPU, model and batch size not stated)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from fitnets.models.registry import create_model, model_spec
from fitnets.profile import count_macs, count_parameters
from fitnets.speed import inference_throughput

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
    lines = ["| teacher | model | weights (paper count) | MACs as built | compression (paper) | images/s | speed-up (paper) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        paper_c = f" ({r.paper_compression:.2f})" if r.paper_compression else ""
        paper_s = f" ({r.paper_speedup:.2f})" if r.paper_speedup else ""
        lines.append(f"| {r.teacher} | {r.student} | {r.params:,} | {r.macs / 1e6:.1f}M | {r.compression:.2f}{paper_c} "
                     f"| {r.images_per_s:,.0f} | {r.speedup:.2f}{paper_s} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- fitnets bench step

@dataclass
class StepRow:
    name: str
    images_per_s: float
    note: str = ""


def _time_steps(step: torch.nn.Module, params: list[torch.nn.Parameter], data, batch_size: int, steps: int,
                warmup: int, autocast: torch.dtype | None = None, channels_last: bool = False) -> float:
    """Median images/s of ``step`` + backward + Adam update over ``steps`` timed steps after ``warmup``."""
    import statistics
    import time

    from fitnets.data.loader import batches

    optimizer = torch.optim.Adam(params, lr=1e-4)
    device = data.images.device
    times = []
    for i, (x, y, index) in enumerate(batches(data, batch_size, shuffle=True, drop_last=True)):
        if i >= warmup + steps:
            break
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            losses, _ = step(x, y, index, 0)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        else:
            losses["loss"].item()  # the step's work is done when its loss exists
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def bench_step(teacher_name: str, student_name: str, batch_size: int = 64, input_shape: tuple[int, ...] | None = None,
               num_classes: int = 10, steps: int = 20, warmup: int = 5, device: torch.device | str = "cpu",
               hint: str | None = None, guided: str | None = None) -> tuple[list[StepRow], dict[str, float]]:
    """Training throughput of one teacher/student pair on synthetic data, for each kind of step and each speed
    option, all in one run so that the ratios compare like with like.

    Returns:
        The rows, and the ratios: ``kd_fast_over_baseline`` (KD step, teacher live, the fastest teacher-side
        options / all off; ``fastest_teacher_option`` names them),
        ``kd_fast_bf16_over_baseline`` (the same with the student in bf16 autocast), ``kd_cached_cost`` (KD
        step with cached teacher logits, cost relative to a plain student step), ``stage1_cost`` (stage-1 step
        with both forwards cut short, cost relative to full forwards), ``data_wait_share`` (share of a KD epoch
        spent producing augmented batches).
    """
    import copy
    import time

    from fitnets.cache import TeacherCache
    from fitnets.data.loader import ImageData, batches
    from fitnets.fitnet import FitNet
    from fitnets.steps import CEStep, HintStep, KDStep
    from fitnets.teacher import FrozenTeacher

    device = torch.device(device)
    t_spec, s_spec = model_spec(teacher_name), model_spec(student_name)
    shape = tuple(input_shape or s_spec.input_shape)
    n = batch_size * (warmup + steps)
    generator = torch.Generator().manual_seed(0)
    data = ImageData(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=generator),
                     torch.randint(0, num_classes, (n,), generator=generator), num_classes).to(device)
    torch.manual_seed(0)
    teacher_model = create_model(teacher_name, num_classes=num_classes).to(device)
    student0 = create_model(student_name, num_classes=num_classes).to(device)

    def student():  # a fresh copy per measurement: same start, no state carried over
        return copy.deepcopy(student0)

    run = functools.partial(_time_steps, data=data, batch_size=batch_size, steps=steps, warmup=warmup)
    rows: list[StepRow] = []

    def add(name, step, params, note="", **kw):
        rows.append(StepRow(name, run(step, params, **kw), note))
        return rows[-1].images_per_s

    s = student()
    run(CEStep(s), list(s.parameters()))  # untimed: the first measurement would also pay for allocator warm-up
    s = student()
    plain = add("plain student step (CE)", CEStep(s), list(s.parameters()), "fp32")
    s = student()
    slow_t = FrozenTeacher(copy.deepcopy(teacher_model))
    kd_base = add("KD step, teacher live, every option off", KDStep(s, lambda x, i: slow_t(x), 3.0, lambda e: 4.0),
                  list(s.parameters()), "fp32 teacher, contiguous")
    variants = {  # the teacher-side options, each measured; the fastest is "all options on"
        "channels_last teacher": FrozenTeacher(copy.deepcopy(teacher_model), channels_last=True),
        "bf16 + channels_last teacher": FrozenTeacher(copy.deepcopy(teacher_model), dtype=torch.bfloat16,
                                                      channels_last=True),
        "compiled channels_last teacher + compiled student": FrozenTeacher(copy.deepcopy(teacher_model),
                                                                          channels_last=True, compile=True),
    }
    fast = {}
    for label, frozen in variants.items():
        s = student()
        forward = torch.compile(s) if "compiled student" in label else None
        fast[label] = add(f"KD step, teacher live, {label}",
                          KDStep(s, lambda x, i, t=frozen: t(x), 3.0, lambda e: 4.0, forward_fn=forward),
                          list(s.parameters()), "fp32 student")
    best = max(fast, key=fast.get)
    fast_t = variants[best]
    kd_fast = fast[best]
    s = student()
    forward = torch.compile(s) if "compiled student" in best else None
    kd_fast16 = add(f"KD step, teacher live, {best}, bf16 student",
                    KDStep(s, lambda x, i: fast_t(x), 3.0, lambda e: 4.0, forward_fn=forward),
                    list(s.parameters()), "student under bf16 autocast", autocast=torch.bfloat16)
    cache = TeacherCache.build(fast_t, data, 256, progress=False, dtype=torch.bfloat16)
    s = student()
    kd_cached = add("KD step, cached teacher logits", KDStep(s, cache, 3.0, lambda e: 4.0), list(s.parameters()),
                    "bf16 cache, fp32 student")
    s = student()
    # FitNet stage 2 is the KD step (from the stage-1 weights): same cost as the KD rows above.
    hint = hint or t_spec.hint
    guided = guided or s_spec.guided
    example = data.images[:2].float()
    fit_full = FitNet(slow_t, s, hint, guided, example)
    fit_full.truncate = False
    full = add("FitNet stage 1, full forwards", HintStep(fit_full), fit_full.stage1_parameters(),
               "both networks run to the end")
    s = student()
    fit_cut = FitNet(slow_t, s, hint, guided, example)
    cut = add("FitNet stage 1, cut after hint/guided", HintStep(fit_cut), fit_cut.stage1_parameters(),
              "fp32 teacher, as above")
    s = student()
    fit_fast = FitNet(variants["channels_last teacher"], s, hint, guided, example)
    hints = TeacherCache.build(fit_fast.hint_features, data, 256, progress=False, dtype=torch.bfloat16)
    add("FitNet stage 1, cut + cached hints", HintStep(fit_fast, hints), fit_fast.stage1_parameters(), "bf16 cache")

    # Data: the share of a KD epoch spent producing (augmented) batches in memory.
    start = time.perf_counter()
    for _ in batches(data, batch_size, shuffle=True, pad=4, flip=True):
        pass
    data_time = time.perf_counter() - start
    epoch_time = n / kd_fast
    ratios = {"kd_fast_over_baseline": kd_fast / kd_base, "kd_fast_bf16_over_baseline": kd_fast16 / kd_base,
              "kd_cached_cost": plain / kd_cached, "stage1_cost": full / cut,
              "data_wait_share": data_time / (data_time + epoch_time)}
    ratios["fastest_teacher_option"] = best
    return rows, ratios
