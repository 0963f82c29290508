"""A run from a ``RunConfig``: build the networks and data, lay out the run folder, train each stage, test.

Run folder: ``config.yaml`` (the resolved config), ``metrics.jsonl`` (a line per epoch), ``last.safetensors``
(the resume point, written atomically each epoch), ``<stage>_best.safetensors`` (the best weights by
validation), ``student.safetensors`` (the final student: plain ``state_dict`` keys, loads into the bare
architecture) and ``results.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from fitnets.training.cache import TeacherCache, cache_blocker
from fitnets.checkpoint import load_checkpoint, load_weights, save_checkpoint
from fitnets.training.config import RunConfig, from_dict, to_dict
from fitnets.training.distributed import init_distributed
from fitnets.data.loader import ImageData, load_dataset, split_validation, take, to_float
from fitnets.data.preprocess import Preprocess
from fitnets.training.engine import RunContext, Stage, evaluate_accuracy, evaluate_agreement, evaluate_hint, run_stage
from fitnets.training.steps import CEStep, HintStep, KDStep, OneStageStep
from fitnets.errors import FitNetsError
from fitnets.core.fitnet import FitNet
from fitnets.core.modes import eval_mode
from fitnets.core.losses import kd_weight_at
from fitnets.models.registry import create_model, model_spec
from fitnets.core.teacher import FrozenTeacher

log = logging.getLogger(__name__)

_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FitNetsError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise FitNetsError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def load_model(spec: str, **kwargs) -> nn.Module:
    """``NAME`` (shipped weights when the model has them, else fresh), ``NAME:PATH`` (weights from a file, or a
    run folder's ``student.safetensors`` built with that run's ``model_args``)."""
    name, _, path = spec.partition(":")
    if not path:
        return create_model(name, pretrained=model_spec(name).pretrained is not None, **kwargs)
    weights = Path(path)
    if weights.is_dir():
        if (weights / "config.yaml").is_file():  # the run's own constructor arguments, e.g. num_classes
            kwargs = {**config_of_run(weights).model_args, **kwargs}
        weights = weights / "student.safetensors"
    return load_weights(create_model(name, **kwargs), weights)


def load_trained(spec: str, flag: str = "--teacher", **kwargs) -> nn.Module:
    """Like ``load_model``, but a model without shipped weights must be given a weights file."""
    name, _, path = spec.partition(":")
    if not path and model_spec(name).pretrained is None:
        raise FitNetsError(f"{name!r} has no shipped weights: give trained ones as {flag} {name}:PATH")
    return load_model(spec, **kwargs)


@dataclass
class Data:
    train: ImageData
    val: ImageData
    test: ImageData


def load_data(config: RunConfig, device: torch.device) -> Data:
    cfg = config.data
    size = tuple(cfg.image_size) if cfg.image_size else None
    train, test = (load_dataset(cfg.name, split, cfg.dir, cfg.download, size, cfg.stream, cfg.memory_gb, cfg.workers)
                   for split in ("train", "test"))
    train, val = split_validation(train, cfg.val_size, seed=0)  # the same split for every seed and method
    train, test = take(train, cfg.train_size), take(test, cfg.test_size)
    if cfg.preprocess != "none":  # fitted on the training split only
        if not isinstance(train, ImageData):
            raise FitNetsError(f"data.preprocess={cfg.preprocess} needs the dataset in memory, and this folder is "
                               "streamed from disk; set data.stream=false (it must fit in memory) or preprocess=none")
        prep = Preprocess(cfg.preprocess).fit(train.images)
        train, val, test = (ImageData(prep(d.images), d.labels, d.num_classes) for d in (train, val, test))
    return Data(train.to(device), val.to(device), test.to(device))


class Run:
    """Everything a run builds from its config (used by ``train``, ``distill`` and the demo)."""

    def __init__(self, config: RunConfig, run_dir: Path | None = None, progress: bool = True):
        self.config = config
        self.world = init_distributed(config.device)  # a world of one unless started by torchrun
        self.device = resolve_device(config.device)
        if self.world.enabled and self.device.type == "cuda":  # one GPU per process
            self.device = torch.device("cuda", self.world.local_rank)
            torch.cuda.set_device(self.device)
        self.run_dir = Path(run_dir) if run_dir else Path(config.out) / (
            config.name or f"{config.method}-{config.student}-seed{config.seed}")
        self.progress = progress
        torch.manual_seed(config.seed)
        self.student = create_model(config.student, **config.model_args).to(self.device)
        spec = model_spec(config.student)
        self.input_shape = spec.input_shape
        self.teacher = None
        self.fitnet = None
        if config.method != "ce":
            self.teacher = FrozenTeacher(load_trained(config.teacher, **config.teacher_args).to(self.device),
                                         dtype=_DTYPES[config.teacher_dtype],
                                         channels_last=config.teacher_channels_last, compile=config.compile,
                                         fold_bn=config.teacher_fold_bn)
        if config.method in ("fitnet", "fitnet-onestage"):
            teacher_name = config.teacher.partition(":")[0]
            hint = config.hint or model_spec(teacher_name).hint
            guided = config.guided or spec.guided
            if not hint or not guided:
                raise FitNetsError("method fitnet needs --hint and --guided (module paths; see `fitnets layers`)")
            self.fitnet = FitNet(self.teacher, self.student, hint, guided,
                                 torch.zeros(2, *self.input_shape, device=self.device),
                                 config.hint_stage.regressor_activation, config.hint_stage.regressor_batch_norm)
        if config.channels_last:
            self.student.to(memory_format=torch.channels_last)
        # The CE/KD steps call the student through torch.compile when asked; the hint stages keep the eager
        # forward, whose layer hooks (the taps) a compiled graph would not run.
        self.student_forward = torch.compile(self.student) if config.compile else None

    # ------------------------------------------------------------ the plan
    def plan(self) -> str:
        c = self.config
        n_student = sum(p.numel() for p in self.student.parameters())
        lines = [f"method   {c.method}", f"student  {c.student} ({n_student:,} parameters)"]
        if self.teacher is not None:
            n_teacher = sum(p.numel() for p in self.teacher.module.parameters())
            lines.append(f"teacher  {c.teacher} ({n_teacher:,} parameters, frozen, eval mode)")
        lines.append(f"data     {c.data.name} (validation {c.data.val_size}, batch {c.data.batch_size})")
        if c.method == "fitnet-onestage":
            lines += [self.fitnet.describe(),
                      f"train    {c.epochs} epochs, one stage (not the paper's method): cross-entropy + "
                      f"{c.hint_stage.beta} × MSE(regressor(guided), hint), no KD term; all {n_student:,} student "
                      "parameters and the regressor"]
        elif self.fitnet is not None:
            trained = self.fitnet.stage1_parameter_names()
            n1 = sum(p.numel() for p in self.fitnet.stage1_parameters())
            lines += [self.fitnet.describe(),
                      f"stage 1  {c.hint_stage.epochs} epochs, hint loss; trains {n1:,} parameters: the student's "
                      f"{len(trained)} tensors up to {self.fitnet.guided} ({', '.join(trained[:4])}"
                      f"{', ...' if len(trained) > 4 else ''}) and the regressor; the teacher runs up to "
                      f"{self.fitnet.hint} only, the student up to {self.fitnet.guided} only",
                      f"stage 2  {c.epochs} epochs, KD loss (τ={c.kd.temperature}, λ {c.kd.weight_start}→"
                      f"{c.kd.weight_end}), all {n_student:,} student parameters, fresh optimizer, "
                      f"regressor dropped"]
        elif c.method == "kd":
            lines.append(f"train    {c.epochs} epochs, KD loss (τ={c.kd.temperature}, λ {c.kd.weight_start}→"
                         f"{c.kd.weight_end}), all {n_student:,} student parameters")
        else:
            lines.append(f"train    {c.epochs} epochs, cross-entropy, all {n_student:,} parameters")
        lines.append(f"run dir  {self.run_dir}")
        return "\n".join(lines)

    # ------------------------------------------------------------ stages
    def _teacher_fn(self, data: Data, what: str, forward):
        """The teacher's output for a batch: from a cache built once when that is valid, else live."""
        c = self.config
        blocker = cache_blocker(c.data.pad, c.data.flip)
        if c.teacher_cache and blocker is None:
            return TeacherCache.build(forward, data.train, c.data.eval_batch_size, what, self.progress,
                                      _DTYPES[c.cache_dtype], spill_dir=self.run_dir)
        if c.teacher_cache:
            log.info("no %s cache: %s", what, blocker)
        return lambda x, index: forward(x)

    def _main_stage(self, data: Data) -> Stage:
        c = self.config
        groups: list[dict[str, Any]]
        if c.method == "fitnet" and c.hint_stage.pretrained_lr_scale != 1.0:
            pre = set(self.fitnet.stage1_parameter_names())
            named = list(self.student.named_parameters())
            groups = [{"params": [p for n, p in named if n in pre], "lr_scale": c.hint_stage.pretrained_lr_scale},
                      {"params": [p for n, p in named if n not in pre]}]
        else:
            groups = [{"params": list(self.student.parameters())}]
        decay = c.kd.decay_epochs or c.epochs
        weight = lambda epoch: kd_weight_at(epoch, c.kd.weight_start, c.kd.weight_end, decay)  # noqa: E731
        modules: dict[str, nn.Module] = {"model": self.student}
        if c.method == "fitnet-onestage":
            hints = self._teacher_fn(data, "teacher hints", self.fitnet.hint_features)
            step = OneStageStep(self.fitnet, c.hint_stage.beta, hints)
            groups[-1]["params"] = groups[-1]["params"] + list(self.fitnet.regressor.parameters())
            modules["regressor"] = self.fitnet.regressor
            extra = lambda epoch: {}  # noqa: E731
        elif self.teacher is None:
            step = CEStep(self.student, self.student_forward)
            extra = lambda epoch: {}  # noqa: E731
        else:
            step = KDStep(self.student, self._teacher_fn(data, "teacher logits", self.teacher),
                          c.kd.temperature, weight, c.kd.tau_squared, self.student_forward)
            extra = lambda epoch: {"kd_weight": weight(epoch)}  # noqa: E731

        def evaluate():
            if not len(data.val):
                return {}, None
            val = evaluate_accuracy(self.student, data.val, c.data.eval_batch_size, c.channels_last)
            return {"val_acc": val["acc"], "val_loss": val["loss"]}, val["acc"]

        return Stage("main", step, groups, modules, evaluate, c.epochs, c.optim, c.patience,
                     select_best=c.keep == "best", extra_metrics=extra)

    def _hint_stage(self, data: Data) -> Stage:
        c = self.config

        def evaluate():
            if not len(data.val):
                return {}, None
            loss = evaluate_hint(self.fitnet, data.val, c.data.eval_batch_size)
            return {"val_hint_loss": loss}, -loss

        # Stage 1 saves the whole student (its upper layers are untouched) and the regressor.
        hints = self._teacher_fn(data, "teacher hints", self.fitnet.hint_features)
        return Stage("hint", HintStep(self.fitnet, hints), [{"params": self.fitnet.stage1_parameters()}],
                     {"model": self.student, "regressor": self.fitnet.regressor}, evaluate,
                     c.hint_stage.epochs, c.hint_stage.optim, c.hint_stage.patience)

    # ------------------------------------------------------------ running
    @torch.no_grad()
    def _check_classes(self, data: Data) -> None:
        with eval_mode(self.student):
            outputs = self.student(to_float(data.train.head(1))).shape[-1]
        if outputs != data.train.num_classes:
            raise FitNetsError(f"{self.config.student} has {outputs} outputs but {self.config.data.name} has "
                               f"{data.train.num_classes} classes; set model_args.num_classes="
                               f"{data.train.num_classes}")

    def prepare_dir(self, resume: bool) -> dict[str, Any] | None:
        last = self.run_dir / "last.safetensors"
        if resume:
            if not last.is_file():
                raise FitNetsError(f"nothing to resume in {self.run_dir}: no last.safetensors")
            tensors, meta = load_checkpoint(last)
            return {"tensors": tensors, "meta": meta}
        if last.exists() or (self.run_dir / "results.json").exists():
            raise FitNetsError(f"{self.run_dir} already holds a run; continue it with --resume {self.run_dir} "
                               "or choose another --name")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
        return None

    def execute(self, resume: bool = False, data: Data | None = None) -> dict[str, Any]:
        """Train every stage (continuing from ``last.safetensors`` when ``resume``), test, write results."""
        main = self.world.is_main
        if main or resume:  # only rank 0 lays out the folder; every rank reads the resume point
            resume_state = self.prepare_dir(resume)
        else:
            resume_state = None
        if main:
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(self.config), sort_keys=False))
        data = data or load_data(self.config, self.device)
        self._check_classes(data)
        c = self.config
        ctx = RunContext(data.train, self.run_dir, to_dict(c), c.data.batch_size, c.seed, c.data.pad,
                         c.data.flip, c.channels_last, c.log_every, self.progress, resume_state,
                         autocast=_DTYPES[c.student_dtype])
        torch.manual_seed(c.seed)
        start = time.perf_counter()
        summary: dict[str, Any] = {}
        stages = ([("hint", self._hint_stage)] if c.method == "fitnet" else []) + [("main", self._main_stage)]
        names = [name for name, _ in stages]
        done = resume_state["meta"]["stage"] if resume_state else None
        for i, (name, make_stage) in enumerate(stages):
            if done is not None and done != name and done in names[i + 1:]:
                continue  # finished before the interruption: its result is in the checkpoint's weights
            summary[name] = run_stage(make_stage(data), ctx)
        test = evaluate_accuracy(self.student, data.test, c.data.eval_batch_size, c.channels_last)
        if self.teacher is not None:  # how closely the student follows its teacher, on the test set
            test.update({f"teacher_{k}": v for k, v in evaluate_agreement(self.student, self.teacher, data.test).items()})
        results = {"method": c.method, "student": c.student, "teacher": c.teacher if c.method != "ce" else None,
                   "seed": c.seed, "dataset": c.data.name, "test_acc": test["acc"], "test_loss": test["loss"],
                   **{k: v for k, v in test.items() if k.startswith("teacher_")},
                   "parameters": sum(p.numel() for p in self.student.parameters()),
                   "train_time_s": time.perf_counter() - start, "processes": self.world.world_size,
                   "stages": summary}
        if main:
            save_checkpoint(self.run_dir / "student.safetensors", self.student.state_dict(),
                            {"model": c.student, "model_args": c.model_args, "test_acc": test["acc"]})
            (self.run_dir / "results.json").write_text(json.dumps(results, indent=2))
        return results


def config_of_run(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FitNetsError(f"{run_dir} is not a run folder (no config.yaml)")
    return from_dict(yaml.safe_load(path.read_text()))
