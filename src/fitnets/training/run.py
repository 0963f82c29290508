"""A run from a ``RunConfig``: build the parts, take the method's stages from its recipe, lay out the run
folder, train each stage with the engine, test.

Run folder: ``config.yaml`` (the resolved config), ``metrics.jsonl`` (a line per epoch), ``last.safetensors``
(the resume point, written atomically each epoch), ``<stage>_best.safetensors`` (the best weights by
validation), ``student.safetensors`` (the final student: plain ``state_dict`` keys, loads into the bare
architecture), ``record.json`` (what other commands read without the models: input shape, sizes, costs, the
evaluation view; ``fitnets.training.record``) and ``results.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from fitnets.checkpoint import save_checkpoint
from fitnets.core.fitnet import FitNet
from fitnets.core.inputs import InputFormat
from fitnets.core.modes import eval_mode
from fitnets.core.outputs import logits_of, logits_origin
from fitnets.core.taps import dry_run
from fitnets.core.teacher import FrozenTeacher
from fitnets.data.loader import example
from fitnets.errors import FitNetsError
from fitnets.imports import is_object_name
from fitnets.models.registry import create_model, is_model_factory, model_spec
from fitnets.training import distributed, fast
from fitnets.training.cache import cache_root
from fitnets.training.config import RunConfig, to_dict
from fitnets.training.engine import RunContext, Stage, run_stage
from fitnets.training.evaluate import evaluate_accuracy, evaluate_agreement
from fitnets.training.loading import Data, ModelRef, default_name, load_data, load_model
from fitnets.training.recipes import METHODS, Parts
from fitnets.training.record import check_same_data, describe, measured_speed, write_record
from fitnets.training.run_folder import (
    check_point,
    check_resume,
    extension,
    kept_rows,
    open_folder,
    read_metrics,
    refuse_occupied,
    release_folder,
    resume_point,
    trim_metrics,
)
from fitnets.training.run_plan import plan_text
from fitnets.training.speed import Speed, lowered
from fitnets.training.teacher_outputs import TeacherOutputs, frozen_teacher, teacher_source
from fitnets.training.tensorboard import TensorBoardLog

log = logging.getLogger(__name__)

def _more_outputs(model: str | None, args: str, classes: int) -> str:
    """How to give the model ``model`` names ``classes`` outputs."""
    if model is None or is_object_name(model):
        return f"give the model you passed {classes} outputs"
    if is_model_factory(model):  # not NAME:PATH, a registered model with its weights
        factory = ":".join(model.split(":")[:2])
        return f"make {factory} build {classes} outputs ({args} are passed to it as keyword arguments)"
    return f"set {args}.num_classes={classes}"


class Run:
    """One training run (used by ``train``, ``distill`` and the demo): resolve the configuration, then build each
    part once, then execute.

    Example:
        >>> results = Run(load_config("configs/demo-fitnet.yaml")).execute()
    """

    def __init__(self, config: RunConfig, run_dir: Path | None = None, progress: bool = True, *,
                 student: nn.Module | None = None, teacher: nn.Module | None = None):
        """The run's models as given: by the names in ``config``, or the ``student`` / trained ``teacher`` objects
        (``fitnets.distill``; the config then names their classes, ``python:module.Class``). The student object
        is trained in place. Nothing that depends on the speed options is built yet (``build``)."""
        self.config = c = config
        self.device = distributed.setup(c.device)
        self.run_dir = Path(run_dir) if run_dir else Path(c.out) / (c.name or default_name(c))
        self.progress = progress
        self.method = METHODS[c.method]
        torch.manual_seed(c.seed)
        self.student = (student if student is not None else create_model(c.student, **c.model_args)).to(self.device)
        if not any(p.requires_grad for p in self.student.parameters()):
            raise FitNetsError(f"the student {c.student} has no trainable parameters: there is nothing to train")
        # (validation: a method with a teacher names one, when no teacher object is given)
        teacher_ref = ModelRef.parse(c.teacher) if teacher is None and self.method.teacher and c.teacher else None
        self.teacher_module: nn.Module | None = None  # the raw teacher: wrapped once, by ``build``
        if teacher is not None and self.method.teacher:
            self.teacher_module = teacher.to(self.device)
        elif teacher_ref is not None:
            self.teacher_module = load_model(teacher_ref, trained=True, **c.teacher_args).to(self.device)
        if self.method.hints:
            self.hint = c.hint or (model_spec(teacher_ref.name).hint if teacher_ref else None)
            self.guided = c.guided or (model_spec(c.student).guided if student is None else None)
            if not self.hint or not self.guided:
                raise FitNetsError(f"method {c.method} needs --hint and --guided (module paths; see `fitnets layers`)")
        self.teacher: FrozenTeacher | None = None  # the built parts (``build``)
        self.fitnet: FitNet | None = None
        self.inputs = InputFormat()
        self.stages: list[Stage] | None = None
        self.fast_note: str | None = None   # what --fast does, for the plan

    def load_data(self) -> Data:
        return load_data(self.config, self.device)

    # ------------------------------------------------------------ resolve, then build

    def resolve(self, data: Data, resume: bool = False, measure: bool = True) -> RunConfig:
        """Settle the whole configuration before anything is built: the models checked against the data, then,
        on a resume, ``--fast``'s recorded choice adopted and the resume rule checked against the folder's saved
        config; on a fresh start, ``--fast``'s choice measured (or read from its cache) — unless not ``measure``
        (``--dry-run``: the plan then says what ``--fast`` will do)."""
        c = self.config
        self._check_models(data)
        if c.fast.mode in fast.UNRESOLVED or (self.method.logits and c.store.enabled and not c.store.dir):
            cache_root()  # a cache folder that cannot be one: said now, in one line, not by each of its users
        if resume:
            if c.fast.mode in fast.UNRESOLVED:
                saved, _ = resume_point(self.run_dir, tensors=False)
                fast.adopt(c, saved)
                self.fast_note = fast.kept_on_resume(saved)
            check_resume(self.run_dir, c)
            check_same_data(self.run_dir, len(data.train), "--resume")
        elif c.fast.mode in fast.UNRESOLVED:
            batch = example(data.train, math.ceil(c.data.batch_size / distributed.current().world_size),
                            c.data.augmentation())
            if not measure:
                self.fast_note = fast.plan(c, self.student, self.teacher_module, batch)
                return c
            fast.apply(c, fast.tune(c, self.student, self.teacher_module, batch, data.train.num_classes,
                                    self._steps(data), retune=c.fast.mode == "retune"))
        return c

    def build(self, data: Data, resume: bool = False, measure: bool = True) -> list[Stage]:
        """The run's parts, each built once, for the resolved configuration: the frozen teacher, the student's
        input format and compiled forward, the FitNet, the teacher-output sources, and the method's stages."""
        if self.stages is not None:
            return self.stages
        c = self.resolve(data, resume, measure)
        speed = Speed.of(c)
        if self.teacher_module is not None:
            self.teacher = frozen_teacher(self.teacher_module, speed, c.teacher_logits_key)
            self.teacher_module = None  # the frozen teacher holds what it needs (a folded copy): no second one kept
        self.inputs = InputFormat(channels_last=speed.channels_last)
        self.inputs.apply_to(self.student)
        # The CE/KD steps call the student through torch.compile when asked; the hint stages keep the eager
        # forward, whose layer hooks (the taps) a compiled graph would not run.
        student_forward = torch.compile(self.student) if speed.compile else None
        if self.method.hints:
            assert self.teacher is not None and self.hint and self.guided  # __init__ refused a run without them
            self.fitnet = FitNet(self.teacher, self.student, self.hint, self.guided,
                                 example(data.train, 2, c.data.augmentation()), c.hint_stage.regressor_activation,
                                 c.hint_stage.regressor_batch_norm, c.logits_key, c.hint_stage.hint_extra_tokens,
                                 c.hint_stage.guided_extra_tokens)
        parts = Parts(c, data, self.student, self.inputs, self._source(data, "logits"), self._source(data, "hints"),
                      student_forward, self.teacher, self.fitnet)
        self.stages = self.method.stages(parts)
        return self.stages

    def _check_models(self, data: Data) -> None:
        """On a batch as training reads it, before anything is measured or built: the student takes the data's
        inputs and has one output per class, the teacher as many."""
        c = self.config
        x = example(data.train, 2, c.data.augmentation())
        if c.input_shape is None:  # recorded in config.yaml: report and export read the shape the run fed
            c.input_shape = list(x.shape[1:])
        with torch.no_grad(), eval_mode(self.student), dry_run(self.student, x):
            raw = self.student(x)
            outputs = logits_of(raw, c.logits_key).shape[-1]
        classes = data.train.num_classes
        if outputs != classes:
            fix = _more_outputs(c.student, "model_args", classes)
            raise FitNetsError(f"{c.student} has {outputs} outputs{logits_origin(raw, c.logits_key)} but "
                               f"{c.data.name} has {classes} classes; {fix}")
        if self.teacher_module is not None:
            with torch.no_grad(), eval_mode(self.teacher_module), dry_run(self.teacher_module, x):
                teacher_outputs = logits_of(self.teacher_module(x), c.teacher_logits_key).shape[-1]
            if teacher_outputs != outputs:
                raise FitNetsError(f"the teacher {c.teacher} has {teacher_outputs} outputs and the student {outputs}:"
                                   f" KD needs the same classes ({_more_outputs(c.teacher, 'teacher_args', outputs)}, "
                                   "or give a teacher trained on this dataset)")

    def _source(self, data: Data, kind: str) -> TeacherOutputs | None:
        """The source of the teacher's ``"logits"`` or ``"hints"`` when the method reads them, else ``None``."""
        if not (self.method.logits if kind == "logits" else self.method.hints):
            return None
        assert self.teacher is not None and (kind == "logits" or self.fitnet is not None)  # built for such methods
        forward = self.teacher if kind == "logits" or self.fitnet is None else self.fitnet.hint_features
        return teacher_source(forward, kind, data.train, self.config, self.teacher, self.run_dir, self.progress)

    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example the run feeds, settled by ``resolve`` (recorded in config.yaml)."""
        assert self.config.input_shape is not None, "resolve() settles the input shape"
        return tuple(self.config.input_shape)

    def _steps(self, data: Data) -> int:
        """The run's training steps, every stage's epochs (what ``--fast`` weighs a compile against)."""
        epochs = self.config.epochs + (self.config.hint_stage.epochs if self.method.stage1 else 0)
        return math.ceil(len(data.train) / self.config.data.batch_size) * epochs

    def plan(self, data: Data, resume: bool = False, measure: bool = True) -> str:
        """What the run will do, stage by stage, with each stage's optimizer (``--dry-run`` prints it, with
        ``measure=False``: nothing is measured); with ``resume``, where it continues from and what a longer run
        does to the schedules."""
        self._refuse_occupied(resume, measure)
        stages = self.build(data, resume, measure)
        point = resume_point(self.run_dir, tensors=False)[1] if resume else None
        return plan_text(self.config, data, stages, self.run_dir, self.student, self.teacher, self.fitnet, point,
                         self.fast_note)

    def _refuse_occupied(self, resume: bool, measure: bool = True) -> None:
        """A fresh run refuses a folder that holds a run before anything is measured or built (and again when it
        claims the folder: ``open_folder``)."""
        if measure and not resume and distributed.current().is_main:
            refuse_occupied(self.run_dir)

    # ------------------------------------------------------------ execute

    def execute(self, resume: bool = False, data: Data | None = None) -> dict[str, Any]:
        """Train every stage (continuing from ``last.safetensors`` when ``resume``), test, write results."""
        c, main = self.config, distributed.current().is_main
        self._refuse_occupied(resume)
        data = data if data is not None else self.load_data()
        stages = self.build(data, resume)
        if c.fast.mode in fast.UNRESOLVED:
            raise RuntimeError("this Run was built for a plan that measures nothing (measure=False): build a new Run "
                               "to execute it")
        point = open_folder(self.run_dir, resume, main)
        names, board = [stage.name for stage in stages], None
        self.record = describe(c, self.student, self.teacher.module if self.teacher is not None else None,
                               self.input_shape(), {"train": len(data.train), "val": len(data.val),
                                                      "test": len(data.test)})
        try:
            if point is not None:
                check_point(self.run_dir, c.method, stages, point)
                note = extension(self.run_dir, stages, point, len(data.train), c.data.batch_size)
                if note:
                    log.warning("%s", note)
            rows = kept_rows(read_metrics(self.run_dir / "metrics.jsonl"), point, names) if point is not None else []
            if c.tensorboard and main:  # before anything is written: a broken TensorBoard stops the run here
                board = TensorBoardLog(self.run_dir / "tensorboard", replay=rows)
            # Only now, with the resume known to be valid, does anything in the folder change.
            if main:
                (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(c), sort_keys=False))
                write_record(self.run_dir, self.record)
                if point is not None:
                    trim_metrics(self.run_dir / "metrics.jsonl", point, names)
            ctx = RunContext(data.train, self.run_dir, to_dict(c), c.data.batch_size, c.seed, c.data.augmentation(),
                             self.inputs, lowered(c.student_dtype), c.log_every, self.progress)
            if point is not None:
                ctx.started -= point.elapsed_s
                ctx.finished = dict(point.finished)
            ctx.rows, ctx.tensorboard = len(rows), board
            torch.manual_seed(c.seed)
            for i, stage in enumerate(stages):
                if point is not None and point.stage in names[i + 1:]:
                    continue  # finished before the interruption: its result is in the checkpoint's weights
                ctx.finished[stage.name] = run_stage(stage, ctx, point)
        finally:
            if board is not None:
                board.close()
            if main:
                release_folder(self.run_dir)  # free again: for a resume, or a new run if nothing was saved
        return self._finish(data, ctx)

    def _finish(self, data: Data, ctx: RunContext) -> dict[str, Any]:
        """Test the student (and its agreement with the teacher), write it and the results."""
        c, main = self.config, distributed.current().is_main
        test = evaluate_accuracy(self.student, data.test, c.data.eval_batch_size, self.inputs, c.logits_key)
        if self.teacher is not None:  # how closely the student follows its teacher, on the test set
            agreement = evaluate_agreement(self.student, self.teacher, data.test, c.data.eval_batch_size, self.inputs,
                                           c.logits_key)
            test.update({f"teacher_{k}": v for k, v in agreement.items()})
        results = {"method": c.method, "student": c.student, "teacher": c.teacher if self.teacher else None,
                   "seed": c.seed, "dataset": c.data.name, "test_acc": test["acc"], "test_loss": test["loss"],
                   **{k: v for k, v in test.items() if k.startswith("teacher_")},
                   "parameters": self.record["parameters"],
                   **{k: v for k, v in self.record.items() if k != "parameters"},
                   "train_time_s": time.perf_counter() - ctx.started, "processes": distributed.current().world_size,
                   "stages": ctx.finished}
        if main and any(is_object_name(name) for name in (c.student, results["teacher"] or "")):
            teacher = self.teacher.module if self.teacher is not None else None
            results["speed"] = measured_speed(self.student, teacher, self.input_shape(), self.device)
        if main:
            save_checkpoint(self.run_dir / "student.safetensors", self.student.state_dict(),
                            {"model": c.student, "model_args": c.model_args, "test_acc": test["acc"]})
            (self.run_dir / "results.json").write_text(json.dumps(results, indent=2))
        return results
