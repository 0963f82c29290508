"""``fitnets bench speed``: inference speed-up and compression of students over their teacher, measured on
this machine, next to the paper's Table 5 (CIFAR-10, GPU, model and batch size not stated)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from tqdm import tqdm

from fitnets.errors import FitNetsError
from fitnets.models.registry import create_model, is_import_path, model_spec
from fitnets.tools.profile import count_macs, count_parameters
from fitnets.tools.speed import inference_throughput, median_seconds

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

AUGMENTATION = {"pad": 4, "flip": True}  # the standard CIFAR augmentation: 162 views per example
PROTOCOL_EPOCHS = 240  # the CIFAR-100 zoo's protocol (configs/cifar100-*.yaml): epochs a live KD run spends


@dataclass
class StepRow:
    name: str
    images_per_s: float
    note: str = ""


def _time_steps(step: torch.nn.Module, params: list[torch.nn.Parameter], data, batch_size: int, steps: int,
                warmup: int, autocast: torch.dtype | None = None, channels_last: bool = False,
                augmented: bool = False) -> float:
    """Median images/s of the engine's own ``train_step`` (input preparation, ``step``, backward, Adam update)
    over ``steps`` timed steps after ``warmup``; ``data`` holds ``warmup + steps`` batches, ``augmented``: with
    the CIFAR augmentation (pad 4, flips), keyed by view as a run's batches are."""
    from fitnets.core.inputs import InputFormat
    from fitnets.data.loader import batches
    from fitnets.training.config import OptimConfig
    from fitnets.training.engine import build_optimizer, train_step

    optimizer = build_optimizer([{"params": params}], OptimConfig(name="adam", lr=1e-4))
    inputs = InputFormat(channels_last=channels_last)
    batch_iter = batches(data, batch_size, shuffle=True, drop_last=True, **(AUGMENTATION if augmented else {}))
    one_step = lambda: train_step(step, optimizer, next(batch_iter), 0, inputs, autocast)  # noqa: E731
    return batch_size / median_seconds(one_step, steps, warmup, data.device)


def bench_step(teacher_name: str, student_name: str, batch_size: int = 64, input_shape: tuple[int, ...] | None = None,
               num_classes: int = 10, steps: int = 20, warmup: int = 5, device: torch.device | str = "cpu",
               hint: str | None = None, guided: str | None = None,
               compile: bool = True, rounds: int = 1, progress: bool = False
               ) -> tuple[list[StepRow], dict[str, float]]:
    """Training throughput of one teacher/student pair on synthetic data, for each kind of step and each speed
    option, all in one run so that the ratios compare like with like. With ``rounds`` > 1 every measurement is
    repeated that many times, in turn, and each row keeps its best: slow drifts of a shared machine then bias
    no row more than another.

    Returns:
        The rows, and the ratios: ``kd_fast_over_baseline`` (KD step, teacher live, the fastest teacher- and
        student-side options with the student in fp32, over every option off; ``fastest_teacher_option`` and
        ``fastest_student_option`` name them), ``kd_fast_bf16_over_baseline`` (the same with the student in
        bf16 autocast), ``kd_cached_cost`` (KD step with cached teacher logits, cost relative to a plain student
        step), the costs of a stage-1 step relative to one with full forwards and every option off:
        ``stage1_cut_cost`` (forwards cut after the hint and guided layers, nothing else),
        ``stage1_fast_cost`` (cut, with the fastest live teacher and student options),
        ``stage1_cached_cost`` (cut, cached hints),
        ``data_wait_share`` (share of a KD epoch spent producing augmented batches); on augmented batches
        (pad 4, flips), with the teacher-output store filled: ``kd_store_cost`` (KD step reading the store, cost
        relative to a plain student step on the same batches), ``kd_fast_store_speedup`` (KD step reading the
        store under ``--fast`` over the plain fp32 student step) and ``store_build_share`` (teacher forwards to
        fill the store over those a live run of the 240-epoch protocol spends: views / 240).
    """
    import copy
    import tempfile
    import time
    from pathlib import Path

    from fitnets.core.fitnet import FitNet
    from fitnets.core.inputs import InputFormat
    from fitnets.core.teacher import FrozenTeacher
    from fitnets.data.loader import ImageData, batches
    from fitnets.training.config import KDConfig
    from fitnets.training.steps import CEStep, HintStep, KDStep
    from fitnets.data.loader import Augmentation
    from fitnets.training.fast import fast_options
    from fitnets.training.store import StoredOutputs
    from fitnets.training.teacher_outputs import CachedOutputs, LiveOutputs

    def kd_step(student, outputs, forward=None):  # KD as a run's stage 2 builds it, λ at its start value
        return KDStep(student, outputs, KDConfig(), 1, forward)

    def cached(forward):
        outputs = CachedOutputs(forward, data, 256, progress=False, dtype=torch.bfloat16)
        outputs.prepare()
        return outputs

    device = torch.device(device)
    t_spec, s_spec = model_spec(teacher_name), model_spec(student_name)
    shape = tuple(input_shape or s_spec.input_shape)
    if not shape:
        raise FitNetsError(f"the input shape of {student_name} is not known: give --input-shape C,H,W")
    n = batch_size * (warmup + steps)
    generator = torch.Generator().manual_seed(0)
    data = ImageData(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=generator),
                     torch.randint(0, num_classes, (n,), generator=generator), num_classes).to(device)
    torch.manual_seed(0)
    # A registered model is built for the classes asked; a user's factory (package.module:factory) as it is.
    classes = lambda name: {} if is_import_path(name) else {"num_classes": num_classes}  # noqa: E731
    teacher_model = create_model(teacher_name, **classes(teacher_name)).to(device)
    student0 = create_model(student_name, **classes(student_name)).to(device)

    def student(channels_last: bool = False):  # a fresh copy per measurement: same start, no state carried over
        s = copy.deepcopy(student0)
        return InputFormat(channels_last=channels_last).apply_to(s)

    run = functools.partial(_time_steps, data=data, batch_size=batch_size, steps=steps, warmup=warmup)
    best: dict[str, StepRow] = {}  # each row's best images/s over the rounds
    fp32_kd: dict[str, tuple[str, str]] = {}  # KD rows, teacher live, student in fp32 -> (teacher, student option)
    bf16_kd: set[str] = set()
    cut_fast: set[str] = set()

    fast = dict(fast_options(device))
    if not compile:
        fast.pop("compile", None)
    fast_autocast = torch.bfloat16 if fast.get("student_dtype") == "bfloat16" else None
    store_dir = tempfile.TemporaryDirectory(prefix="fitnets-bench-store-")

    def filled_store(teacher, dtype):  # the steady state of a later seed: the views the timed steps draw are stored
        outputs = StoredOutputs(teacher, data, Augmentation(**AUGMENTATION), num_classes, dtype,
                                Path(store_dir.name), max_gb=64)
        outputs.prepare()
        for x, _, key in batches(data, batch_size, shuffle=True, drop_last=True, **AUGMENTATION):
            outputs(x, key)  # the batches `_time_steps` draws (same seed and epoch), so every lookup hits
        return outputs

    per_round = 17 + (6 if compile else 0)  # measurements in one round, as below
    bar = tqdm(total=rounds * per_round, desc="bench step", unit="config", leave=False, disable=not progress)

    def add(name, step, params, note="", **kw):
        bar.set_postfix_str(name[:60])
        speed = run(step, params, **kw)
        bar.update()
        if name not in best or speed > best[name].images_per_s:
            best[name] = StepRow(name, speed, note)
        return speed

    def frozen(**options):
        return FrozenTeacher(copy.deepcopy(teacher_model), **options)

    hint = hint or t_spec.hint
    guided = guided or s_spec.guided
    example = data.images[:2].float()
    names = {"plain": "plain student step (CE)", "base": "KD step, teacher live, every option off",
             "cached": "KD step, cached teacher logits",
             "full": f"FitNet stage 1 ({hint} → {guided}), full forwards, every option off",
             "cut": f"FitNet stage 1 ({hint} → {guided}), cut after hint/guided, every other option off",
             "cut_cached": f"FitNet stage 1 ({hint} → {guided}), cut + cached hints",
             "plain_aug": "plain student step (CE), augmented batches",
             "store": "KD step, teacher-output store, augmented batches",
             "fast_live": "--fast, KD step, teacher live, augmented batches",
             "fast_store": "--fast, KD step, teacher-output store, augmented batches"}
    defaults = {"channels_last": True, "fold_bn": True}
    fast_note = ", ".join(f"{k}={v}" for k, v in fast.items())
    # Filled by eager teachers: a compile before the eager rows would slow them (see below); full stores are never
    # asked for a live forward, so the fast rows' compiled teacher reads the same store.
    stores = {"fp32": filled_store(frozen(**defaults), torch.float32),
              "fast": filled_store(frozen(**defaults, dtype=torch.bfloat16), torch.bfloat16)}

    def one_round() -> float:
        s = student()
        run(CEStep(s), list(s.parameters()))  # untimed: the first measurement would also pay for warm-up
        s = student()
        add(names["plain"], CEStep(s), list(s.parameters()), "fp32")

        def kd(teacher_label, teacher, option="", autocast=None):
            channels_last = "channels_last" in option
            s = student(channels_last)
            forward = torch.compile(s) if "compiled" in option else None
            name = f"KD step, teacher live, {teacher_label}" + (f"; student {option}" if option else "")
            note = "student under bf16 autocast" if autocast else "fp32 student"
            if autocast:
                bf16_kd.add(name + " (bf16)")
            else:
                fp32_kd[name] = (teacher_label, option or "contiguous, eager")
            return add(name + (" (bf16)" if autocast else ""), kd_step(s, LiveOutputs(teacher), forward),
                       list(s.parameters()), note, autocast=autocast, channels_last=channels_last)

        off = frozen()
        s = student()
        add(names["base"], kd_step(s, LiveOutputs(off)), list(s.parameters()),
            "fp32 teacher, contiguous, BN unfolded")
        teachers = {"teacher channels_last + folded BN (defaults)": frozen(**defaults),
                    "teacher defaults + bf16": frozen(**defaults, dtype=torch.bfloat16)}
        speeds = {label: kd(label, t) for label, t in teachers.items()}

        def student_options(label: str, options: tuple[str, ...]) -> None:
            for option in options:
                kd(label, teachers[label], option)
            kd(label, teachers[label], options[-1], autocast=torch.bfloat16)

        eager_teacher = max(speeds, key=speeds.get)
        student_options(eager_teacher, ("channels_last",))
        s = student()
        add(names["cached"], kd_step(s, cached(teachers[eager_teacher])), list(s.parameters()),
            "bf16 cache, fp32 student")

        # FitNet stage 2 is the KD step (from the stage-1 weights): same cost as the KD rows above.
        def stage1(name, teacher, note, cut=True, from_cache=False, channels_last=False):
            fit = FitNet(teacher, student(channels_last), hint, guided, example)
            hints = cached(fit.hint_features) if from_cache else LiveOutputs(functools.partial(fit.hint_features, cut=cut))
            return add(name, HintStep(fit, hints, cut), fit.stage1_parameters(), note, channels_last=channels_last)

        stage1(names["full"], off, "both networks run to the end", cut=False)
        stage1(names["cut"], off, "the cut alone")
        # The hint forward is eager (it runs through the taps), so a compiled teacher does not apply here.
        cut_speeds = {}
        for label in teachers:
            cut_fast.add(name := f"FitNet stage 1 ({hint} → {guided}), cut, {label}")
            cut_speeds[label] = stage1(name, teachers[label], "fp32 student")
        label = max(cut_speeds, key=cut_speeds.get)
        cut_fast.add(name := f"FitNet stage 1 ({hint} → {guided}), cut, {label}; student channels_last")
        stage1(name, teachers[label], "fp32 student", channels_last=True)
        stage1(names["cut_cached"], teachers["teacher channels_last + folded BN (defaults)"], "bf16 cache",
               from_cache=True)

        # The teacher-output store, on augmented batches (pad 4, flips), every view filled.
        s = student()
        add(names["plain_aug"], CEStep(s), list(s.parameters()), "fp32", augmented=True)
        s = student()
        add(names["store"], kd_step(s, stores["fp32"]), list(s.parameters()), "fp32 store, fp32 student",
            augmented=True)

        # Data: the time to produce one epoch of (augmented) batches in memory.
        start = time.perf_counter()
        for _ in batches(data, batch_size, shuffle=True, pad=4, flip=True):
            pass
        data_time = time.perf_counter() - start
        # torch.compile last: after a compile, eager steps in the same process can run slower (docs/results.md has
        # the figure), which would bias every eager row measured after it.
        if compile:
            for label, options in (("teacher defaults + compiled", {}),
                                   ("teacher defaults + bf16 + compiled", {"dtype": torch.bfloat16})):
                teachers[label] = frozen(**defaults, **options, compile=True)
                speeds[label] = kd(label, teachers[label])
            student_options(max(speeds, key=speeds.get), ("channels_last", "compiled", "compiled + channels_last"))
        # The --fast preset as a run resolves it on this device (compiled parts last, as above).
        teachers["fast"] = frozen(**defaults, dtype=torch.bfloat16, compile=bool(fast.get("compile")))
        s = student(fast["channels_last"])
        forward = torch.compile(s) if fast.get("compile") else None
        add(names["fast_live"], kd_step(s, LiveOutputs(teachers["fast"]), forward), list(s.parameters()),
            fast_note, autocast=fast_autocast, channels_last=fast["channels_last"], augmented=True)
        s = student(fast["channels_last"])
        forward = torch.compile(s) if fast.get("compile") else None
        add(names["fast_store"], kd_step(s, stores["fast"], forward), list(s.parameters()), fast_note,
            autocast=fast_autocast, channels_last=fast["channels_last"], augmented=True)
        return data_time

    data_time = min(one_round() for _ in range(rounds))
    bar.close()
    rate = {name: row.images_per_s for name, row in best.items()}
    fastest = max(fp32_kd, key=rate.get)
    kd_fast, kd_fast16 = rate[fastest], max(rate[n] for n in bf16_kd)
    full = rate[names["full"]]
    ratios = {"kd_fast_over_baseline": kd_fast / rate[names["base"]],
              "kd_fast_bf16_over_baseline": kd_fast16 / rate[names["base"]],
              "kd_cached_cost": rate[names["plain"]] / rate[names["cached"]],
              "stage1_cut_cost": full / rate[names["cut"]],
              "stage1_fast_cost": full / max(rate[n] for n in cut_fast),
              "stage1_cached_cost": full / rate[names["cut_cached"]],
              "data_wait_share": data_time / (data_time + n / kd_fast),
              "kd_store_cost": rate[names["plain_aug"]] / rate[names["store"]],
              "kd_fast_store_speedup": rate[names["fast_store"]] / rate[names["plain"]],
              "store_build_share": Augmentation(**AUGMENTATION).views / PROTOCOL_EPOCHS}
    store_dir.cleanup()
    teacher, option = fp32_kd[fastest]
    return list(best.values()), {**ratios, "fastest_teacher_option": teacher, "fastest_student_option": option}
