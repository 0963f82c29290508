"""``fitnets bench step``: training throughput of each method's step as a run trains it, timed by the engine's own
epoch.

A declared list of cases and one measuring loop. Each case is a stage built as a run builds it — a ``RunConfig``
with the case's speed options, the frozen teacher from ``frozen_teacher``, the teacher-output source from
``teacher_source``, the stage from the recipes' own builders — and timed by the engine's own epoch,
``train_one_epoch``: its ``images_per_s`` is the figure a run logs in metrics.jsonl, measured the same way (a
whole epoch's images over its wall time, lr set each step, the loss sums and syncs of the loop included).
"""

from __future__ import annotations

import copy
import functools
import logging
import statistics
import tempfile
from dataclasses import replace
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
from fitnets.models.registry import create_model, is_model_factory, model_spec
from fitnets.tools.bench_cases import (
    AUGMENTATION,
    DEFAULTS,
    Case,
    StepRow,
    default_cases,
    format_step_table,
    matrix_cases,
    ratios_of,
)
from fitnets.training import fast as fast_choice
from fitnets.training.config import DataConfig, RunConfig, load_config
from fitnets.training.engine import RunContext, Stage, build_optimizer, train_one_epoch
from fitnets.training.evaluate import HintEval
from fitnets.training.loading import Data
from fitnets.training.recipes import Parts, backprop, hint_stage, knowledge_distillation
from fitnets.training.speed import FIXED, Speed
from fitnets.training.store import StoredOutputs, audit_size
from fitnets.training.teacher_outputs import LiveOutputs, TeacherOutputs, frozen_teacher, teacher_source

log = logging.getLogger(__name__)

__all__ = ["DEFAULTS", "Case", "Pair", "StepRow", "bench_step", "default_cases", "fast_settings", "format_step_table",
           "measure"]

class Pair:
    """What the cases are built from: the teacher and the student as created, their layers, the synthetic data
    (training, and one evaluation batch of validation), and the teachers and teacher outputs the cases share (a
    teacher with given settings is wrapped once; a cache or a store of its outputs filled once)."""

    def __init__(self, teacher: nn.Module, student: nn.Module, hint: str, guided: str, data: ImageData,
                 val: ImageData, batch_size: int, epochs: int, store_root: Path):
        self.teacher_model, self.student_model = teacher, student
        self.hint, self.guided, self.data, self.val, self.batch_size = hint, guided, data, val, batch_size
        self.epochs, self.store_root = epochs, store_root
        self._teachers: dict[tuple, FrozenTeacher] = {}
        self._sources: dict[tuple, TeacherOutputs] = {}

    def config(self, case: Case) -> RunConfig:
        """The run config the case is: its speed options, its batches (augmented or not), and where a run with
        it reads the teacher's outputs from (``teacher_source`` decides, as for a run): live, cached, the store."""
        epochs = self.epochs + 1  # the warm-up epoch and the timed ones
        augment = [("data.pad", AUGMENTATION.pad), ("data.flip", AUGMENTATION.flip)] if case.augmented else []
        return load_config(None, [*case.speed.options().items(), *augment, ("epochs", epochs),
                                   ("hint_stage.epochs", epochs), ("data.batch_size", self.batch_size),
                                   ("data.eval_batch_size", len(self.val)),
                                   ("teacher_cache", case.teacher == "cached"),
                                   ("store.enabled", case.teacher == "store"), ("store.dir", str(self.store_root)),
                                   ("store.max_gb", 64.0)])

    def teacher(self, s: Speed) -> FrozenTeacher:
        key = (s.teacher_dtype, s.teacher_channels_last, s.teacher_fold_bn, s.compiles_teacher)
        if key not in self._teachers:
            self._teachers[key] = frozen_teacher(copy.deepcopy(self.teacher_model), s)
        return self._teachers[key]

    def student(self, s: Speed) -> nn.Module:
        """A fresh copy: every case starts from the same weights."""
        return InputFormat(channels_last=s.channels_last).apply_to(copy.deepcopy(self.student_model))

    def source(self, case: Case, kind: str, config: RunConfig, teacher: FrozenTeacher, forward) -> TeacherOutputs:
        """The source of the teacher's ``kind`` (logits or hints) a run with ``config`` reads (``teacher_source``):
        a cache or a store is shared by the cases with its teacher settings (its values are the same), a store
        filled before timing (``fill_timed``)."""
        s = case.speed
        key = (case.teacher, kind, s.teacher_dtype, s.teacher_channels_last, s.teacher_fold_bn, s.cache_dtype)
        if key in self._sources:
            return self._sources[key]
        source = teacher_source(forward, kind, self.data, config, teacher, progress=False)
        if isinstance(source, StoredOutputs):
            source = fill_timed(source, self.data, self.batch_size, self.epochs)
        if case.teacher != "live":
            self._sources[key] = source
        return source

    def stage(self, case: Case) -> Stage:
        """The case's stage, as the recipes build a run's: its step, the parameters it optimises (with the run's
        default optimizer), the teacher-output source it reads and its validation."""
        config, s = self.config(case), case.speed
        inputs = InputFormat(channels_last=s.channels_last)
        student = self.student(s)
        # The cache and the store are filled before timing, stage 1 keeps the eager forward: no compiled teacher.
        teacher = self.teacher(s if case.teacher == "live" and case.step == "kd" else s.replace(teacher_compile=False))
        if case.step == "hint":
            fitnet = FitNet(teacher, student, self.hint, self.guided, to_float(self.data.head(2)))
            hints = (self.source(case, "hints", config, teacher, fitnet.hint_features) if case.cut else
                     LiveOutputs(functools.partial(fitnet.hint_features, cut=False)))
            return hint_stage(fitnet, hints, config.hint_stage, HintEval(fitnet, self.val, len(self.val), inputs),
                              cut=case.cut)
        parts = Parts(config, Data(self.data, self.val, self.val), student, inputs,
                      self.source(case, "logits", config, teacher, teacher) if case.step == "kd" else None,
                      student_forward=torch.compile(student) if s.compile else None, teacher=teacher)
        return (knowledge_distillation if case.step == "kd" else backprop)(parts)[0]


def workload(cases: list[Case], n: int, batch_size: int, warmup: int, rounds: int, val: int) -> tuple[int, int]:
    """What measuring ``cases`` costs, before it is paid: the teacher's forward images (live steps, the caches
    and stores filled once per teacher setting, the store's audits, stage 1's validation hints) and the student's
    training images (warm-up and timed epochs; each case's validation pass counted as a third of a step per
    image)."""
    teacher = student = 0
    filled: set[tuple] = set()
    for case in cases:
        trained = min(warmup * batch_size, n) + rounds * n
        student += trained + val // 3
        if case.teacher is None:
            continue
        s = case.speed
        key = (case.teacher, case.step, s.teacher_dtype, s.teacher_channels_last, s.teacher_fold_bn, s.cache_dtype)
        teacher += val if case.step == "hint" else 0   # HintEval runs the teacher on the validation split
        if case.teacher == "live":
            teacher += trained
        if case.teacher == "store":  # the slots each timed epoch recomputes to check the store (its audit)
            teacher += rounds * min(audit_size(RunConfig().store.audit_share), n)
        if case.teacher != "live" and key not in filled:
            filled.add(key)
            teacher += n if case.teacher == "cached" else rounds * n + min(warmup * batch_size, n)
    return teacher, student


def fill_timed(outputs: StoredOutputs, data: ImageData, batch_size: int, epochs: int) -> StoredOutputs:
    """Fill the store with the views the timed epochs (1 to ``epochs``) draw, batched as the engine batches them
    (a later seed's steady state: each timed lookup hits) — those only, not every view of every example."""
    outputs.prepare()
    for epoch in range(1, epochs + 1):
        for x, _, key in batches(data, batch_size, shuffle=True, epoch=epoch, aug=outputs.aug):
            outputs(x, key)
    outputs.metrics()  # the fill's misses are not the timed epochs' hit rate
    return outputs


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
    ctx = RunContext(pair.data, run_dir, {}, pair.batch_size, seed=0, aug=AUGMENTATION if case.augmented else
                     Augmentation(), inputs=InputFormat(channels_last=case.speed.channels_last),
                     autocast=case.speed.autocast, progress=False)
    if warmup:
        warm = replace(ctx, train=pair.data.subset(torch.arange(min(warmup * pair.batch_size, len(pair.data)))))
        train_one_epoch(stage, stage.step, optimizer, 0, warm)
        for source in stage.teachers:
            source.metrics()
    if stage.validate is not None:  # as a run's epoch ends
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
    return FIXED | choice.options, choice


def bench_step(teacher_name: str, student_name: str, batch_size: int = 128, input_shape: tuple[int, ...] | None = None,
               num_classes: int = 10, steps: int = 30, warmup: int = 10, device: torch.device | str = "cpu",
               hint: str | None = None, guided: str | None = None, compile: bool = True, rounds: int = 3,
               matrix: bool = False, only: str | None = None, progress: bool = False
               ) -> tuple[list[StepRow], dict[str, float | str]]:
    """Training throughput of one teacher/student pair on synthetic data: each method's step as a run trains
    it, with the default config, the fixed preset and ``--fast``'s measured choice (``default_cases``) — and,
    with ``matrix``, every speed option on its own (``matrix_cases``) — all in one process, so that the ratios
    compare like with like; ``only``: the rows whose name holds that text.

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
    def classes(name: str) -> dict[str, Any]:
        return {} if is_model_factory(name) else {"num_classes": num_classes}

    teacher = create_model(teacher_name, **classes(teacher_name)).to(device)
    student = create_model(student_name, **classes(student_name)).to(device)
    preset = Speed.of(load_config(None, list(fast_settings(device, compile).items())))
    tuned, choice = tuned_settings(teacher, student, to_float(data.head(batch_size)), num_classes)
    cases = default_cases(Speed.of(load_config(None, list(tuned.items()))), preset)
    cases += matrix_cases(preset, compile) if matrix else []
    if only:
        cases = [case for case in cases if only.lower() in case.name.lower()]
        if not cases:
            more = "" if matrix else " (--all: more rows)"
            raise FitNetsError(f"no row of bench step has {only!r} in its name{more}")
    _say_the_cost(cases, choice, n, batch_size, warmup, rounds, len(val))
    hint, guided = hint or t_spec.hint, guided or s_spec.guided
    if hint is None or guided is None:
        raise FitNetsError(f"no registered hint/guided pair for {teacher_name} → {student_name}: give --hint and "
                           "--guided (fitnets suggest ranks them)")
    with tempfile.TemporaryDirectory(prefix="fitnets-bench-store-") as store_root:
        pair = Pair(teacher, student, hint, guided, data, val, batch_size, rounds,
                    Path(store_root))
        rows = measure(cases, pair, rounds, warmup, progress)
    return rows, ratios_of(cases, rows) | {"fast_choice": choice.summary(), "fast_tuning_s": choice.seconds}


def _say_the_cost(cases: list[Case], choice: fast_choice.Choice, n: int, batch_size: int, warmup: int, rounds: int,
                  val: int) -> None:
    """Log what the rows will cost, at the speeds ``--fast`` has just measured for this pair (its defaults'
    images/s): the teacher's forwards and the student's steps, in minutes, before they are spent."""
    teacher, student = workload(cases, n, batch_size, warmup, rounds, val)
    rates = {part: next(iter(r.values())) for part, r in choice.rates.items() if r}
    if "student" not in rates:
        return
    seconds = student / rates["student"] + (teacher / rates["teacher"] if "teacher" in rates else 0.0)
    log.info("bench step: %d rows, %s teacher forwards and %s student training images: about %.0f min here, at the "
             "speeds --fast just measured (--only ROW, fewer --steps or --rounds cost less)", len(cases),
             f"{teacher:,}", f"{student:,}", seconds / 60)
