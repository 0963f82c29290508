"""``fitnets bench speed``: inference speed-up and compression of students over their teacher, measured on
this machine, next to the paper's Table 5 (CIFAR-10, GPU, model and batch size not stated). ``fitnets bench
step``: training throughput of each method's step as a run trains it, timed by the engine's own epoch."""

from __future__ import annotations

import copy
import functools
import statistics
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from fitnets.core.fitnet import FitNet
from fitnets.core.inputs import InputFormat
from fitnets.core.teacher import FrozenTeacher
from fitnets.data.augment import Augmentation, to_float
from fitnets.data.images import ImageData
from fitnets.data.loader import batches
from fitnets.errors import FitNetsError
from fitnets.models.registry import create_model, is_import_path, model_spec
from fitnets.core.profile import count_macs, count_parameters
from fitnets.core.speed import inference_throughput
from fitnets.training.config import DataConfig, HintStageConfig, KDConfig, OptimConfig, RunConfig, load_config
from fitnets.training.engine import RunContext, Stage, build_optimizer, train_one_epoch
from fitnets.training.evaluate import AccuracyEval, HintEval
from fitnets.training import fast as fast_choice
from fitnets.training.fast import DTYPES
from fitnets.training.recipes import hint_stage
from fitnets.training.steps import CEStep, KDStep
from fitnets.training.store import StoredOutputs
from fitnets.training.teacher_outputs import CachedOutputs, LiveOutputs

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
#
# A declared list of cases and one measuring loop. Each case is a stage, built from the same parts a run builds
# (steps, teacher-output sources, ``recipes.hint_stage``), and timed by the engine's own epoch,
# ``train_one_epoch``: its ``images_per_s`` is the figure a run logs in metrics.jsonl, measured the same way
# (a whole epoch's images over its wall time, lr set each step, the loss sums and syncs of the loop included).

AUGMENTATION = Augmentation(pad=4, flip=True)  # the standard CIFAR augmentation: 162 views per example
PROTOCOL_EPOCHS = 240  # the CIFAR-100 zoo's protocol (configs/cifar100-*.yaml): epochs a live KD run spends


@dataclass(frozen=True)
class Speed:
    """The speed settings of a case, named as a run's config names them."""

    teacher_dtype: torch.dtype | None
    teacher_channels_last: bool
    teacher_fold_bn: bool
    teacher_compile: bool
    cache_dtype: torch.dtype | None
    student_channels_last: bool
    student_compile: bool
    student_autocast: torch.dtype | None

    @classmethod
    def of(cls, config: RunConfig) -> "Speed":
        """What a run with ``config`` uses."""
        return cls(DTYPES[config.teacher_dtype], config.teacher_channels_last, config.teacher_fold_bn, config.compile,
                   DTYPES[config.cache_dtype], config.channels_last, config.compile, DTYPES[config.student_dtype])


DEFAULTS = Speed.of(RunConfig())
ALL_OFF = replace(DEFAULTS, teacher_channels_last=False, teacher_fold_bn=False)  # the option matrix's baseline


@dataclass(frozen=True)
class Case:
    """One row of ``bench step``.

    Attributes:
        step: what is trained, on which loss: ``"ce"``, ``"kd"`` or ``"hint"`` (FitNets' stage 1).
        teacher: where the teacher's outputs come from: ``"live"``, ``"cached"`` (once per example, as a run
            without augmentation) or ``"store"`` (the teacher-output store, every view filled); ``None`` for CE.
        speed: the speed settings; ``settings`` names them in the row (``"defaults"``, ``"--fast"``, ...).
        augmented: batches with the CIFAR augmentation (pad 4, flips), keyed by view as a run's are.
        cut: stage 1's forwards stop after the hint and guided layers (off only to measure what that saves).
        key: the name the ratios use for the row.
    """

    label: str
    step: str
    teacher: str | None
    speed: Speed
    settings: str
    augmented: bool = False
    cut: bool = True
    key: str = ""
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.label} ({self.settings})"

    @property
    def compiles(self) -> bool:
        """Whether timing it runs a ``torch.compile``d forward (stage 1 keeps the eager one, as a run does;
        cached and stored outputs are computed before timing)."""
        s = self.speed
        return self.step != "hint" and (s.student_compile or (self.teacher == "live" and s.teacher_compile))


@dataclass
class StepRow:
    name: str
    images_per_s: float            # the median over the rounds of a timed epoch's images/s
    note: str = ""
    step: str = ""                 # the case's label and settings, of which ``name`` is made
    settings: str = ""
    rates: list[float] = field(default_factory=list)  # each round's figure
    data_wait_share: float = 0.0   # the median share of the epoch spent waiting for batches


# The question a user asks: how fast is each method's step as a run trains it, with the defaults and with --fast.
STEPS = [  # (key, label, step, teacher, augmented)
    ("ce", "CE step", "ce", None, False),
    ("kd_cached", "KD step, teacher logits cached", "kd", "cached", False),
    ("stage1_cached", "FitNet stage 1, cut, hints cached", "hint", "cached", False),
    ("ce_aug", "CE step, augmented batches", "ce", None, True),
    ("kd_live_aug", "KD step, teacher live (no store), augmented batches", "kd", "live", True),
    ("kd_store", "KD step, teacher-output store, augmented batches", "kd", "store", True),
]


def default_cases(fast: Speed, preset: Speed | None = None) -> list[Case]:
    """Each step of ``STEPS`` as a run trains it with the default config, with the fixed preset ``--fast`` was
    (``preset``, when given), then with ``--fast``'s measured choice (``fast``)."""
    settings = [("defaults", DEFAULTS, ""), ("fixed preset", preset, "preset_"), ("--fast", fast, "fast_")]
    return [Case(label, step, teacher, speed, name, augmented, key=f"{prefix}{key}")
            for name, speed, prefix in settings if speed is not None
            for key, label, step, teacher, augmented in STEPS]


def matrix_cases(fast: Speed, compile: bool) -> list[Case]:
    """The option matrix (``--all``), on plain batches: the live-teacher KD step with each teacher option and,
    with the ``--fast`` teacher, each student option in fp32 and under bf16 autocast; stage 1 with full
    forwards, with the cut alone, and with the cut and the teacher and student options."""
    off, defaults = ALL_OFF, DEFAULTS
    bf16 = replace(defaults, teacher_dtype=torch.bfloat16)
    teachers = {"every option off": off, "teacher defaults (channels_last + folded BN)": defaults,
                "teacher defaults + bf16": bf16}
    if compile:
        teachers |= {"teacher defaults + compiled": replace(defaults, teacher_compile=True),
                     "teacher defaults + bf16 + compiled": replace(bf16, teacher_compile=True)}
    students = {"student channels_last": {"student_channels_last": True}}
    if compile:
        students |= {"student compiled": {"student_compile": True},
                     "student compiled + channels_last": {"student_compile": True, "student_channels_last": True}}
    fast_teacher = replace(bf16, teacher_compile=fast.teacher_compile)
    fast_label = "teacher defaults + bf16" + (" + compiled" if fast.teacher_compile else "")
    kd = [Case("KD step, teacher live", "kd", "live", speed, label, key="kd_off" if speed == off else "")
          for label, speed in teachers.items()]
    kd += [Case("KD step, teacher live", "kd", "live", replace(fast_teacher, **options, student_autocast=autocast),
                f"{fast_label}; {label}" + (" (bf16)" if autocast else ""),
                note="student under bf16 autocast" if autocast else "")
           for autocast in (None, torch.bfloat16)
           for label, options in (({} if autocast is None else {"student contiguous, eager": {}}) | students).items()]
    stage1 = [Case("FitNet stage 1", "hint", "live", off, "full forwards, every option off", cut=False,
                   key="stage1_full"),
              Case("FitNet stage 1", "hint", "live", off, "cut, every other option off", key="stage1_cut")]
    stage1 += [Case("FitNet stage 1", "hint", "live", speed, f"cut, {label}")
               for label, speed in (("teacher defaults", defaults), ("teacher defaults + bf16", bf16),
                                    ("teacher defaults + bf16; student channels_last",
                                     replace(bf16, student_channels_last=True)))]
    return kd + stage1


class Pair:
    """What the cases are built from: the teacher and the student as created, their layers, the synthetic data
    (training, and one evaluation batch of validation), and the teachers and stores the cases share (a teacher
    with given settings is wrapped once)."""

    def __init__(self, teacher: nn.Module, student: nn.Module, hint: str, guided: str, data: ImageData,
                 val: ImageData, batch_size: int, epochs: int, store_root: Path):
        self.teacher_model, self.student_model = teacher, student
        self.hint, self.guided, self.data, self.val, self.batch_size = hint, guided, data, val, batch_size
        self.epochs, self.store_root = epochs, store_root
        self._teachers: dict[tuple, FrozenTeacher] = {}
        self._stores: dict[tuple, StoredOutputs] = {}

    def teacher(self, s: Speed, compile: bool) -> FrozenTeacher:
        key = (s.teacher_dtype, s.teacher_channels_last, s.teacher_fold_bn, compile)
        if key not in self._teachers:
            self._teachers[key] = FrozenTeacher(copy.deepcopy(self.teacher_model), dtype=s.teacher_dtype,
                                                channels_last=s.teacher_channels_last, compile=compile,
                                                fold_bn=s.teacher_fold_bn)
        return self._teachers[key]

    def student(self, s: Speed) -> nn.Module:
        """A fresh copy: every case starts from the same weights."""
        return InputFormat(channels_last=s.student_channels_last).apply_to(copy.deepcopy(self.student_model))

    def store(self, s: Speed) -> StoredOutputs:
        """A store filled with every view the timed epochs draw (a later seed's steady state): each lookup hits.
        Filled by an eager teacher: a compiled one would answer no lookup here."""
        key = (s.teacher_dtype, s.teacher_channels_last, s.teacher_fold_bn, s.cache_dtype)
        if key not in self._stores:
            outputs = StoredOutputs(self.teacher(s, compile=False), self.data, AUGMENTATION, self.data.num_classes,
                                    s.cache_dtype or torch.float32, self.store_root, max_gb=64)
            outputs.prepare()
            for epoch in range(1, self.epochs + 1):  # the epochs `measure` times, batched as the engine batches
                for x, _, key_ in batches(self.data, self.batch_size, shuffle=True, epoch=epoch,
                                          pad=AUGMENTATION.pad, flip=AUGMENTATION.flip):
                    outputs(x, key_)
            outputs.metrics()  # the fill's misses are not the timed epochs' hit rate
            self._stores[key] = outputs
        return self._stores[key]

    def stage(self, case: Case) -> Stage:
        """The case's stage: its step, the parameters it optimises (with the run's default optimizer), the
        teacher-output source it reads and its validation, as a run's."""
        s = case.speed
        epochs = self.epochs + 1  # the warm-up epoch and the timed ones
        inputs = InputFormat(channels_last=s.student_channels_last)
        if case.step == "hint":
            fitnet = FitNet(self.teacher(s, compile=False), self.student(s), self.hint, self.guided,
                            to_float(self.data.head(2)))
            hints = (LiveOutputs(functools.partial(fitnet.hint_features, cut=case.cut)) if case.teacher == "live" else
                     CachedOutputs(fitnet.hint_features, self.data, 256, "teacher hints", False, s.cache_dtype))
            return hint_stage(fitnet, hints, HintStageConfig(epochs=epochs),
                              HintEval(fitnet, self.val, len(self.val), inputs), cut=case.cut)
        student = self.student(s)
        forward = torch.compile(student) if s.student_compile else None
        if case.step == "ce":
            step, sources = CEStep(student, forward), ()
        else:
            # The cache and the store are filled before timing: their teacher need not be compiled.
            source = {"live": lambda: LiveOutputs(self.teacher(s, compile=s.teacher_compile)),
                      "cached": lambda: CachedOutputs(self.teacher(s, compile=False), self.data, 256,
                                                      "teacher logits", False, s.cache_dtype),
                      "store": lambda: self.store(s)}[case.teacher]()
            step, sources = KDStep(student, source, KDConfig(), epochs, forward), (source,)
        return Stage("main", step, [{"params": list(student.parameters())}], {"model": student},
                     AccuracyEval(student, self.val, len(self.val), inputs), epochs, OptimConfig(), teachers=sources)


def measure(cases: list[Case], pair: Pair, rounds: int, warmup: int, progress: bool = False) -> list[StepRow]:
    """Each case's stage, built once and warmed up by one short epoch of ``warmup`` steps, then trained one
    epoch per round with the engine's ``train_one_epoch``; each row keeps the median over the rounds. The rounds
    take the cases in turn, so that a slow spell of a shared machine lands on every row alike — the compiled
    cases after all rounds of the others: after a ``torch.compile``, eager steps in the same process ran slower
    (docs/results.md), which a run, one process per run, never sees."""
    built: dict[str, tuple[Stage, torch.optim.Optimizer, RunContext]] = {}
    rates: dict[str, list[float]] = {c.name: [] for c in cases}
    waits: dict[str, list[float]] = {c.name: [] for c in cases}
    hit_rates: dict[str, list[float]] = {c.name: [] for c in cases}
    bar = tqdm(total=len(cases) * rounds, desc="bench step", unit="epoch", leave=False, disable=not progress)
    with tempfile.TemporaryDirectory(prefix="fitnets-bench-") as run_dir:
        for phase in ([c for c in cases if not c.compiles], [c for c in cases if c.compiles]):
            for r in range(rounds):
                for case in phase:
                    bar.set_postfix_str(case.name[:60])
                    if case.name not in built:
                        built[case.name] = _warmed_up(case, pair, warmup, Path(run_dir))
                    stage, optimizer, ctx = built[case.name]
                    metrics = train_one_epoch(stage, stage.step, optimizer, r + 1, ctx)
                    rates[case.name].append(metrics["images_per_s"])
                    waits[case.name].append(metrics["data_wait_share"])
                    for source in stage.teachers:
                        hit_rates[case.name] += [source.metrics().get("store_hit_rate", 1.0)]
                    bar.update()
    bar.close()
    rows = []
    for case in cases:
        note = case.note
        if hit_rates[case.name] and min(hit_rates[case.name]) < 1:  # a store row that was not what it says
            note = f"{note}; store hit rate {min(hit_rates[case.name]):.0%}".lstrip("; ")
        rows.append(StepRow(case.name, statistics.median(rates[case.name]), note, case.label, case.settings,
                            rates[case.name], statistics.median(waits[case.name])))
    return rows


def _warmed_up(case: Case, pair: Pair, warmup: int, run_dir: Path):
    """The case's stage, its optimizer and the context its epochs run in, after one untimed epoch of ``warmup``
    steps (memory allocated, kernels chosen, compiled graphs built) and the stage's validation, as a run
    validates after each epoch. That pass changes the speed of the epochs after it: its large batches raise
    glibc's mmap threshold, after which a training step reuses its memory instead of having it mapped and
    faulted in anew at every step (the MNIST student on this project's CPU: ~11,500 page faults a step before a
    validation, none after; docs/results.md). A run's epochs after its first run in that state; so do these."""
    stage = pair.stage(case)
    for source in stage.teachers:
        source.prepare()
    optimizer = build_optimizer(stage.optimize, stage.optim)
    aug = AUGMENTATION if case.augmented else Augmentation()
    ctx = RunContext(pair.data, run_dir, {}, pair.batch_size, seed=0, aug=aug,
                     inputs=InputFormat(channels_last=case.speed.student_channels_last),
                     autocast=case.speed.student_autocast, progress=False)
    if warmup:
        warm = replace(ctx, train=pair.data.subset(torch.arange(min(warmup * pair.batch_size, len(pair.data)))))
        train_one_epoch(stage, stage.step, optimizer, 0, warm)
        for source in stage.teachers:
            source.metrics()
    stage.validate()
    return stage, optimizer, ctx


def fast_settings(device: torch.device, compile: bool = True) -> dict[str, Any]:
    """The config keys of the fixed preset ``--fast`` was on ``device`` (``fitnets.training.fast``), less compile
    if not ``compile``."""
    return {key: value for key, value in fast_choice.preset_options(device) if compile or key != "compile"}


def tuned_settings(teacher: nn.Module, student: nn.Module, x: torch.Tensor, num_classes: int
                   ) -> tuple[dict[str, Any], fast_choice.Choice]:
    """The config keys ``--fast`` chooses for this pair, batch and device, measured now (not cached: the bench
    reports what the tuner finds today), and the choice with its speed-ups."""
    with tempfile.TemporaryDirectory(prefix="fitnets-bench-fast-") as cache:
        choice = fast_choice.tune(load_config(None, fast_choice.fast_overrides(True)), student, teacher, x,
                                  num_classes, retune=True, cache=Path(cache) / "fast.json")
    return dict(fast_choice.FIXED) | choice.options, choice


def bench_step(teacher_name: str, student_name: str, batch_size: int = 128, input_shape: tuple[int, ...] | None = None,
               num_classes: int = 10, steps: int = 30, warmup: int = 10, device: torch.device | str = "cpu",
               hint: str | None = None, guided: str | None = None, compile: bool = True, rounds: int = 3,
               matrix: bool = False, only: str | None = None, progress: bool = False
               ) -> tuple[list[StepRow], dict[str, float | str]]:
    """Training throughput of one teacher/student pair on synthetic data: each method's step as a run trains
    it, with the default config, the fixed preset and ``--fast``'s measured choice (``default_cases``) — and, with ``matrix``, every speed
    option on its own (``matrix_cases``) — all in one process, so that the ratios compare like with like;
    ``only``: the rows whose name holds that text.

    Returns:
        The rows, and ratios, each between rows measured on the same batches:
        ``kd_cached_cost`` (CE step / KD step with cached teacher logits), ``kd_store_cost`` (CE step / KD step
        reading the store, augmented batches), ``kd_fast_store_speedup`` (``--fast`` KD step reading the store /
        CE step with the defaults, augmented batches), ``data_wait_share`` (share of a KD epoch, teacher live,
        augmented batches, spent waiting for them) and ``store_build_share`` (teacher forwards to fill the store
        over those a live run of the 240-epoch protocol spends: views / 240). With ``matrix``, on plain batches:
        ``kd_fast_over_baseline`` (KD step, teacher live, the fastest options with the student in fp32 over
        every option off; ``fastest_teacher_option`` and ``fastest_student_option`` name them),
        ``kd_fast_bf16_over_baseline`` (the same with the student in bf16 autocast), and the costs of a stage-1
        step relative to one with full forwards and every option off: ``stage1_cut_cost`` (the cut alone),
        ``stage1_fast_cost`` (the cut with the fastest teacher and student options), ``stage1_cached_cost``
        (the cut and cached hints, as a run with the defaults).
    """
    device = torch.device(device)
    t_spec, s_spec = model_spec(teacher_name), model_spec(student_name)
    shape = tuple(input_shape or s_spec.input_shape)
    if not shape:
        raise FitNetsError(f"the input shape of {student_name} is not known: give --input-shape C,H,W")
    n = batch_size * steps  # one timed epoch
    generator = torch.Generator().manual_seed(0)
    data, val = (ImageData(torch.randint(0, 256, (k, *shape), dtype=torch.uint8, generator=generator),
                           torch.randint(0, num_classes, (k,), generator=generator), num_classes).to(device)
                 for k in (n, DataConfig.eval_batch_size))  # a run validates in batches of this size
    torch.manual_seed(0)
    # A registered model is built for the classes asked; a user's factory (package.module:factory) as it is.
    classes = lambda name: {} if is_import_path(name) else {"num_classes": num_classes}  # noqa: E731
    teacher = create_model(teacher_name, **classes(teacher_name)).to(device)
    student = create_model(student_name, **classes(student_name)).to(device)
    preset = Speed.of(load_config(None, list(fast_settings(device, compile).items())))
    tuned, choice = tuned_settings(teacher, student, to_float(data.head(batch_size)), num_classes)
    cases = default_cases(Speed.of(load_config(None, list(tuned.items()))), preset)
    cases += matrix_cases(preset, compile) if matrix else []
    if only:
        cases = [case for case in cases if only.lower() in case.name.lower()]
        if not cases:
            raise FitNetsError(f"no row of bench step has {only!r} in its name{'' if matrix else ' (--all: more rows)'}")
    with tempfile.TemporaryDirectory(prefix="fitnets-bench-store-") as store_root:
        pair = Pair(teacher, student, hint or t_spec.hint, guided or s_spec.guided, data, val, batch_size, rounds,
                    Path(store_root))
        rows = measure(cases, pair, rounds, warmup, progress)
    return rows, _ratios(cases, rows) | {"fast_choice": choice.summary(), "fast_tuning_s": choice.seconds}


# Each ratio of two rows measured on the same batches: (numerator, denominator) by the rows' keys.
RATIOS = {"kd_cached_cost": ("ce", "kd_cached"), "kd_store_cost": ("ce_aug", "kd_store"),
          "kd_fast_store_speedup": ("fast_kd_store", "ce_aug"), "kd_preset_store_speedup": ("preset_kd_store", "ce_aug"),
          "stage1_cut_cost": ("stage1_full", "stage1_cut"),
          "stage1_cached_cost": ("stage1_full", "stage1_cached")}


def _ratios(cases: list[Case], rows: list[StepRow]) -> dict[str, float | str]:
    """The ratios whose rows were measured (``--only`` may leave some out)."""
    row = {case.key: r for case, r in zip(cases, rows) if case.key}
    rate = {key: r.images_per_s for key, r in row.items()}
    ratios: dict[str, float | str] = {name: rate[a] / rate[b] for name, (a, b) in RATIOS.items()
                                      if a in rate and b in rate}
    if "kd_live_aug" in row:
        ratios["data_wait_share"] = row["kd_live_aug"].data_wait_share
    ratios["store_build_share"] = AUGMENTATION.views / PROTOCOL_EPOCHS
    live = [(case, r) for case, r in zip(cases, rows) if case.step == "kd" and case.teacher == "live"
            and not case.augmented]
    fp32 = [(case, r) for case, r in live if case.speed.student_autocast is None]
    bf16 = [r.images_per_s for case, r in live if case.speed.student_autocast]
    if "kd_off" in rate and fp32 and bf16:
        fastest, fastest_row = max(fp32, key=lambda pair: pair[1].images_per_s)
        teacher, _, student = fastest.settings.partition("; ")
        ratios |= {"kd_fast_over_baseline": fastest_row.images_per_s / rate["kd_off"],
                   "kd_fast_bf16_over_baseline": max(bf16) / rate["kd_off"],
                   "fastest_teacher_option": teacher, "fastest_student_option": student or "student contiguous, eager"}
    cut = [r.images_per_s for case, r in zip(cases, rows)
           if case.step == "hint" and case.teacher == "live" and case.cut and case.speed != ALL_OFF]
    if "stage1_full" in rate and cut:
        ratios["stage1_fast_cost"] = rate["stage1_full"] / max(cut)
    return ratios


RATIO_LINES = [  # (ratio, what it is, unit)
    ("kd_cached_cost", "KD step, teacher logits cached: cost relative to a CE step", "×"),
    ("kd_store_cost", "KD step reading the store (every view filled): cost relative to a CE step, augmented batches",
     "×"),
    ("kd_fast_store_speedup", "--fast KD step reading the store / CE step with the defaults, augmented batches", "×"),
    ("kd_preset_store_speedup", "the same with the fixed preset / CE step with the defaults, augmented batches", "×"),
    ("store_build_share", "teacher forwards to fill the store / those of a live 240-epoch run (162 views / 240)", ""),
    ("data_wait_share", "share of a KD epoch (teacher live, augmented batches) spent waiting for its batches", "%"),
    ("kd_fast_over_baseline", "KD step, teacher live, the fastest options with the student in fp32 / every option off",
     "×"),
    ("kd_fast_bf16_over_baseline", "the same with the student under bf16 autocast / every option off", "×"),
    ("stage1_cut_cost", "FitNet stage 1, cut forwards: cost relative to full forwards, every other option off", "×"),
    ("stage1_fast_cost", "FitNet stage 1, cut + the fastest live options: cost relative to full forwards, every "
                         "option off", "×"),
    ("stage1_cached_cost", "FitNet stage 1, cut + cached hints (the defaults): cost relative to full forwards, every "
                           "option off", "×"),
]


def format_step_table(rows: list[StepRow], ratios: dict[str, float | str]) -> str:
    """The default rows side by side (defaults, the fixed preset, ``--fast``'s measured choice, its ratio to the
    defaults), any others below, then the ratios and the choice."""
    by = {(r.step, r.settings): r for r in rows}
    rate = lambda r: f"{r.images_per_s:,.0f}" if r else "—"  # noqa: E731
    lines = ["| step | defaults | fixed preset | --fast (measured choice) | --fast / defaults |",
             "|---|---:|---:|---:|---:|"]
    for _, label, *_ in STEPS:
        d, p, f = (by.get((label, settings)) for settings in ("defaults", "fixed preset", "--fast"))
        if d or p or f:
            notes = "; ".join(r.note for r in (d, p, f) if r and r.note)
            speedup = f"{f.images_per_s / d.images_per_s:.2f}×" if d and f else "—"
            lines.append(f"| {label}{f' ({notes})' if notes else ''} | {rate(d)} | {rate(p)} | {rate(f)} | {speedup} |")
    others = [r for r in rows if r.settings not in ("defaults", "fixed preset", "--fast")]
    if others:
        lines += ["", "| step | options | images/s | notes |", "|---|---|---:|---|"]
        lines += [f"| {r.step} | {r.settings} | {rate(r)} | {r.note} |" for r in others]
    lines += ["", "```"]
    for key, text, unit in RATIO_LINES:
        if key in ratios:
            lines.append(f"{text}: " + (f"{100 * ratios[key]:.1f}%" if unit == "%" else f"{ratios[key]:.2f}{unit}"))
    if "fast_choice" in ratios:
        lines.append(f"--fast chose (measured in {ratios['fast_tuning_s']:.1f} s): {ratios['fast_choice']}")
    if "fastest_teacher_option" in ratios:
        lines.append(f"the fastest options, teacher live, student fp32: {ratios['fastest_teacher_option']}; "
                     f"{ratios['fastest_student_option']}")
    return "\n".join(lines + ["```"])
