"""A run from a ``RunConfig``: build the parts, take the method's stages from its recipe, lay out the run
folder, train each stage with the engine, test.

Run folder: ``config.yaml`` (the resolved config), ``metrics.jsonl`` (a line per epoch), ``last.safetensors``
(the resume point, written atomically each epoch), ``<stage>_best.safetensors`` (the best weights by
validation), ``student.safetensors`` (the final student: plain ``state_dict`` keys, loads into the bare
architecture) and ``results.json``.
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
from fitnets.data.loader import example
from fitnets.errors import FitNetsError
from fitnets.models.registry import create_model, is_import_path, model_spec
from fitnets.training import distributed, fast
from fitnets.training.fast import DTYPES
from fitnets.training.config import RunConfig, resume_changes, to_dict
from fitnets.training.engine import ResumePoint, RunContext, Stage, lr_factor, run_stage
from fitnets.training.evaluate import evaluate_accuracy, evaluate_agreement
from fitnets.training.loading import Data, ModelRef, default_name, load_data, load_model
from fitnets.training.recipes import METHODS, Parts
from fitnets.training.record import check_resume, describe, measured_speed, write_record
from fitnets.training.run_folder import claim_folder, kept_rows, read_metrics, release_folder, resume_point, trim_metrics
from fitnets.training.tensorboard import TensorBoardLog
from fitnets.training.store import StoredOutputs, human_size, stores_dir
from fitnets.training.teacher_outputs import TeacherOutputs, teacher_source

log = logging.getLogger(__name__)

def _more_outputs(model: str, args: str, classes: int) -> str:
    """How to give the model ``model`` names ``classes`` outputs."""
    if model.startswith("python:"):
        return f"give the model you passed {classes} outputs"
    if is_import_path(model):  # not NAME:PATH, a registered model with its weights
        factory = ":".join(model.split(":")[:2])
        return f"make {factory} build {classes} outputs ({args} are passed to it as keyword arguments)"
    return f"set {args}.num_classes={classes}"


class Run:
    """One training run (used by ``train``, ``distill`` and the demo).

    Example:
        >>> results = Run(load_config("configs/demo-fitnet.yaml")).execute()
    """

    def __init__(self, config: RunConfig, run_dir: Path | None = None, progress: bool = True, *,
                 student: nn.Module | None = None, teacher: nn.Module | None = None):
        """Build the run's models: by the names in ``config``, or the ``student`` / trained ``teacher`` objects
        given (``fitnets.distill``; the config then names their classes, ``python:module.Class``). The student
        object is trained in place."""
        self.config = c = config
        self.device = distributed.setup(c.device)
        self.run_dir = Path(run_dir) if run_dir else Path(c.out) / (c.name or default_name(c))
        self.progress = progress
        self.method = METHODS[c.method]
        torch.manual_seed(c.seed)
        self.student = (student if student is not None else create_model(c.student, **c.model_args)).to(self.device)
        if not any(p.requires_grad for p in self.student.parameters()):
            raise FitNetsError(f"the student {c.student} has no trainable parameters: there is nothing to train")
        self.teacher = self.fitnet = self._teacher_module = None
        self._teacher_ref = ModelRef.parse(c.teacher) if teacher is None and self.method.teacher else None
        if self.method.teacher:
            module = teacher if teacher is not None else load_model(self._teacher_ref, trained=True, **c.teacher_args)
            self._teacher_module = module.to(self.device)
        if self.method.hints:
            self.hint = c.hint or (model_spec(self._teacher_ref.name).hint if self._teacher_ref else None)
            self.guided = c.guided or (model_spec(c.student).guided if student is None else None)
            if not self.hint or not self.guided:
                raise FitNetsError(f"method {c.method} needs --hint and --guided (module paths; see `fitnets layers`)")
        self._speed_parts()

    def _speed_parts(self) -> None:
        """Wrap the models for the config's speed options: the frozen teacher, the student's input format, its
        compiled forward. Again after ``--fast`` has chosen them (``_choose_speed``): until then the raw teacher
        is kept, so that its wrapper can be built anew without loss."""
        c = self.config
        self._stages = None   # built for the models as they were: built again on the next call
        if self._teacher_module is not None:
            self.teacher = fast.frozen_teacher(self._teacher_module, c)
            if self.fitnet is not None:
                self.fitnet.teacher = self.teacher
        if c.fast.mode not in fast.UNRESOLVED:
            self._teacher_module = None
        self.inputs = InputFormat(channels_last=c.channels_last)
        self.inputs.apply_to(self.student)
        # The CE/KD steps call the student through torch.compile when asked; the hint stages keep the eager
        # forward, whose layer hooks (the taps) a compiled graph would not run.
        self.student_forward = torch.compile(self.student) if c.compile else None

    def _choose_speed(self, data: Data, resume: bool) -> None:
        """``--fast`` before anything trains: the options measured on this run's models and batch (or cached for
        them) — or, on a resume, those the run recorded, never measured again, so that the resumed student is
        bit-identical — written into the config the run folder and its checkpoints save."""
        c = self.config
        if c.fast.mode not in fast.UNRESOLVED:
            return
        if resume:
            fast.adopt(c, resume_point(self.run_dir, tensors=False)[0])
        else:
            fast.apply(c, fast.tune(c, self.student, self._teacher_module, self._batch(data), data.train.num_classes,
                                    self._steps(data), retune=c.fast.mode == "retune"))
        self._speed_parts()

    def _batch(self, data: Data) -> torch.Tensor:
        """A training batch of one process, as the steps get it: what ``--fast`` times."""
        world = distributed.current().world_size
        return example(data.train, math.ceil(self.config.data.batch_size / world), self.config.data.augmentation())

    def _steps(self, data: Data) -> int:
        """The run's training steps, every stage's epochs."""
        epochs = self.config.epochs + (self.config.hint_stage.epochs if self.method.hints else 0)
        return math.ceil(len(data.train) / self.config.data.batch_size) * epochs

    def _attach(self, data: Data) -> None:
        """Before anything trains, on a batch as training reads it: the student takes the data's inputs and has
        one output per class, the teacher as many; the FitNet (hint, guided, regressor) is built for them."""
        c = self.config
        x = example(data.train, 2, c.data.augmentation())
        if c.input_shape is None:  # recorded in config.yaml: report and export read the shape the run fed
            c.input_shape = list(x.shape[1:])
        with torch.no_grad(), eval_mode(self.student), dry_run(self.student, x):
            raw = self.student(self.inputs(x))
            outputs = logits_of(raw, c.logits_key).shape[-1]
        classes = data.train.num_classes
        if outputs != classes:
            raise FitNetsError(f"{c.student} has {outputs} outputs{logits_origin(raw, c.logits_key)} but "
                               f"{c.data.name} has {classes} classes; {_more_outputs(c.student, 'model_args', classes)}")
        if self.teacher is not None:
            with dry_run(self.teacher.module, x):
                teacher_outputs = self.teacher(x).shape[-1]
            if teacher_outputs != outputs:
                raise FitNetsError(f"the teacher {c.teacher} has {teacher_outputs} outputs and the student {outputs}:"
                                   f" KD needs the same classes ({_more_outputs(c.teacher, 'teacher_args', outputs)}, "
                                   "or give a teacher trained on this dataset)")
        if self.method.hints and self.fitnet is None:
            self.fitnet = FitNet(self.teacher, self.student, self.hint, self.guided, x,
                                 c.hint_stage.regressor_activation, c.hint_stage.regressor_batch_norm, c.logits_key,
                                 c.hint_stage.hint_extra_tokens, c.hint_stage.guided_extra_tokens)

    def stages(self, data: Data) -> list[Stage]:
        """The method's stages for this run, from its recipe (nothing is computed until the engine runs them);
        built once for ``data`` — the plan and the run share them, and what building them says is said once."""
        if self._stages is None or self._stages[0] is not data:
            parts = Parts(self.config, data, self.student, self.inputs, self.teacher_source(data, "logits"),
                          self.teacher_source(data, "hints"), self.student_forward, self.teacher, self.fitnet)
            self._stages = (data, self.method.recipe(parts))
        return self._stages[1]

    def teacher_source(self, data: Data, kind: str) -> TeacherOutputs | None:
        """The source of the teacher's ``"logits"`` or ``"hints"`` when the method reads them, else ``None``."""
        if not (self.method.logits if kind == "logits" else self.method.hints):
            return None
        forward = self.teacher if kind == "logits" else self.fitnet.hint_features
        return teacher_source(forward, kind, data.train, self.config, self.teacher, self.run_dir, self.progress)

    def plan(self, data: Data, resume: bool = False) -> str:
        """What the run will do, stage by stage, with each stage's optimizer (``--dry-run`` prints it); with
        ``resume``, where it continues from and what a longer run does to the schedules."""
        c = self.config
        lines = [f"method   {c.method}",
                 f"student  {c.student} ({sum(p.numel() for p in self.student.parameters()):,} parameters)"]
        if self.teacher is not None:
            lines.append(f"teacher  {c.teacher} ({sum(p.numel() for p in self.teacher.module.parameters()):,} "
                         "parameters, frozen, eval mode)")
        lines.append(f"data     {c.data.name} ({len(data.train):,} training examples, validation {len(data.val):,}, "
                     f"batch {c.data.batch_size})")
        if self.fitnet is not None:
            lines.append(self.fitnet.describe())
        stages = self.stages(data)
        for i, stage in enumerate(stages, 1):
            o = stage.optim
            schedule = o.schedule + (f" (× {o.gamma:g} at epochs {', '.join(map(str, o.milestones))})"
                                     if o.schedule == "step" else "")
            lines.append(f"{f'stage {i}' if len(stages) > 1 else 'train':<8} {stage.about}; {o.name}, lr {o.lr:g}, "
                         f"{schedule} schedule" + (f", max-norm {o.max_norm:g}" if o.max_norm else ""))
        store = next((t for s in stages for t in s.teachers if isinstance(t, StoredOutputs)), None)
        if store is not None:
            per = "(seed, epoch, example)" if store.drawn else f"augmented view ({store.views} per example)"
            lines.append(f"store    teacher logits per {per}, {human_size(store.size_bytes())} in all, from the "
                         f"store in {stores_dir(store.root)}, filled by the teacher's live forwards where empty")
        if resume:
            _, point = resume_point(self.run_dir, tensors=False)
            lines.append(f"resume   after epoch {point.epoch + 1} of stage {point.stage}")
            note = self.extension(stages, point, math.ceil(len(data.train) / c.data.batch_size))
            if note:
                lines.append(f"         {note}")
        student = [f"{c.student_dtype} autocast" if c.student_dtype != "float32" else "float32"]
        student += ["channels_last"] * c.channels_last + ["compiled"] * c.compile
        lines.append(f"speed    student {', '.join(student)}" + (
            f"; teacher {c.teacher_dtype}{', channels_last' * c.teacher_channels_last}"
            f"{', folded BN' * c.teacher_fold_bn}{', compiled' * c.compile}" if self.teacher is not None else ""))
        if c.fast.mode in fast.UNRESOLVED:
            lines.append(f"fast     {fast.plan(c, resume, self.student, self._teacher_module, self._batch(data))}")
        lines.append(f"run dir  {self.run_dir}")
        return "\n".join(lines)

    def load_data(self) -> Data:
        data = load_data(self.config, self.device)
        self._attach(data)
        return data

    def _open_folder(self, resume: bool) -> ResumePoint | None:
        """Claim the folder for this run alone — a fresh start and a resume alike, so that two processes never
        train into one folder — and return the resume point when ``resume`` (the folder's config, its checkpoint
        and this run's config checked against each other first)."""
        main = distributed.current().is_main
        point = None
        if resume:
            saved, point = resume_point(self.run_dir)
            # Where the folder lies is not what it trained: a copied or renamed folder resumes in place, as
            # `--resume RUN_DIR` does; a shape the run took from its data stays the recorded one.
            saved.name, saved.out = self.config.name, self.config.out
            self.config.input_shape = self.config.input_shape or saved.input_shape
            changes = resume_changes(saved, self.config)
            if changes:
                log.info("resuming with %s", ", ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changes.items()))
        elif main and ((self.run_dir / "last.safetensors").exists() or (self.run_dir / "results.json").exists()):
            raise FitNetsError(f"{self.run_dir} already holds a run; continue it with --resume {self.run_dir} "
                               "or choose another --name")
        if main:  # only rank 0 lays out the folder
            claim_folder(self.run_dir)
            if point is None:
                (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
        return point

    def _check_point(self, stages: list[Stage], point: ResumePoint) -> None:
        """Refuse, before anything in the folder changes, a checkpoint that does not fit this run's stages and
        models, and what a resume cannot honour: a finished stage's length changed, a stage shorter than what it
        has trained, a finished run with nothing left to train."""
        stage = next((s for s in stages if s.name == point.stage), None)
        if stage is None:
            raise FitNetsError(f"the checkpoint in {self.run_dir} is from a stage {point.stage!r} that method "
                               f"{self.config.method} does not have")
        try:
            stage.load(point.tensors)
        except RuntimeError as err:
            raise FitNetsError(f"the checkpoint in {self.run_dir} does not fit this run's models: "
                               f"{str(err).splitlines()[0]}") from None
        for earlier in stages[:stages.index(stage)]:
            done = point.finished.get(earlier.name, {}).get("epochs", earlier.epochs)
            if done != earlier.epochs:
                raise FitNetsError(f"stage {earlier.name} of {self.run_dir} finished after {done} epochs; a resume "
                                   f"cannot make it {earlier.epochs}: start a new run (another --name) for that")
        trained = point.epoch + 1
        if stage.epochs < trained:
            raise FitNetsError(f"stage {stage.name} of {self.run_dir} has trained {trained} epochs; a resume cannot "
                               f"shorten it to {stage.epochs}: give at least {trained} (its selected weights are "
                               f"in {stage.name}_best.safetensors)")
        stopped = stage.patience is not None and point.stale >= stage.patience
        if stage is stages[-1] and (stage.epochs == trained or stopped):
            raise FitNetsError(f"{self.run_dir} has finished ({'stopped early after ' if stopped else ''}{trained} "
                               f"epochs of stage {stage.name}): nothing to resume; give more epochs to extend it")

    def extension(self, stages: list[Stage], point: ResumePoint, steps_per_epoch: int) -> str | None:
        """What continuing ``point``'s stage past the length it was trained for does to its schedules (a resume
        with more epochs, ``--dry-run`` prints it): the learning-rate schedule and λ's decay are laid over the new
        length, so both jump at the first new epoch."""
        stage = next(s for s in stages if s.name == point.stage)
        rows = [r for r in read_metrics(self.run_dir / "metrics.jsonl") if r.get("stage") == stage.name]
        planned = {r["epoch"] for r in rows}
        old = point.config.get("epochs") if stage.name == stages[-1].name else None
        if not rows or old is None or stage.epochs <= old or max(planned) != point.epoch + 1:
            return None
        step = (point.epoch + 1) * steps_per_epoch
        lr = stage.optim.lr * lr_factor(stage.optim, step, stage.epochs * steps_per_epoch, steps_per_epoch)
        text = (f"extending stage {stage.name} from {old} to {stage.epochs} epochs lays its {stage.optim.schedule} "
                f"learning-rate schedule over the new length: epoch {point.epoch + 2} starts at lr {lr:.3g} "
                f"(epoch {point.epoch + 1} ended at {rows[-1].get('lr', float('nan')):.3g})")
        weight = stage.step.epoch_metrics(point.epoch + 1).get("kd_weight")
        if weight is not None and "kd_weight" in rows[-1]:
            text += f", and λ goes from {rows[-1]['kd_weight']:.3g} to {weight:.3g}"
        return text

    def execute(self, resume: bool = False, data: Data | None = None) -> dict[str, Any]:
        """Train every stage (continuing from ``last.safetensors`` when ``resume``), test, write results."""
        c, main = self.config, distributed.current().is_main
        if resume:  # before the resume rule compares this config with the saved one
            self._choose_speed(None, resume=True)
        point = self._open_folder(resume)
        board = None
        try:
            if data is None:
                data = self.load_data()
            else:
                self._attach(data)
            self._choose_speed(data, resume=False)
            stages = self.stages(data)
            names = [stage.name for stage in stages]
            if point is not None:
                self._check_point(stages, point)
                note = self.extension(stages, point, math.ceil(len(data.train) / c.data.batch_size))
                if note:
                    log.warning("%s", note)
            record = describe(c, self.student, self.teacher.module if self.teacher is not None else None,
                              tuple(c.input_shape), {"train": len(data.train), "val": len(data.val),
                                                     "test": len(data.test)})
            if point is not None:
                check_resume(self.run_dir, record, "--resume")
            rows = kept_rows(read_metrics(self.run_dir / "metrics.jsonl"), point, names) if point is not None else []
            if c.tensorboard and main:  # before anything is written: a broken TensorBoard stops the run here
                board = TensorBoardLog(self.run_dir / "tensorboard", replay=rows)
            # Only now, with the resume known to be valid, does anything in the folder change.
            if main:
                (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(c), sort_keys=False))
                write_record(self.run_dir, record)
                if point is not None:
                    trim_metrics(self.run_dir / "metrics.jsonl", point, names)
            ctx = RunContext(data.train, self.run_dir, to_dict(c), c.data.batch_size, c.seed, c.data.augmentation(),
                             self.inputs, DTYPES[c.student_dtype], c.log_every, self.progress)
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
                release_folder(self.run_dir)  # the folder is free again: for a resume, or a new run if nothing was saved
        test = evaluate_accuracy(self.student, data.test, c.data.eval_batch_size, self.inputs, c.logits_key)
        if self.teacher is not None:  # how closely the student follows its teacher, on the test set
            agreement = evaluate_agreement(self.student, self.teacher, data.test, c.data.eval_batch_size, self.inputs,
                                           c.logits_key)
            test.update({f"teacher_{k}": v for k, v in agreement.items()})
        results = {"method": c.method, "student": c.student, "teacher": c.teacher if self.teacher else None,
                   "seed": c.seed, "dataset": c.data.name, "test_acc": test["acc"], "test_loss": test["loss"],
                   **{k: v for k, v in test.items() if k.startswith("teacher_")},
                   "parameters": record["parameters"], **{k: v for k, v in record.items() if k != "parameters"},
                   "train_time_s": time.perf_counter() - ctx.started, "processes": distributed.current().world_size,
                   "stages": ctx.finished}
        if main and any(name.startswith("python:") for name in (c.student, results["teacher"] or "")):
            teacher = self.teacher.module if self.teacher is not None else None
            results["speed"] = measured_speed(self.student, teacher, tuple(c.input_shape), self.device)
        if main:
            save_checkpoint(self.run_dir / "student.safetensors", self.student.state_dict(),
                            {"model": c.student, "model_args": c.model_args, "test_acc": test["acc"]})
            (self.run_dir / "results.json").write_text(json.dumps(results, indent=2))
        return results

