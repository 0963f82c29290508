"""The training engine: one loop for every method. A method is a list of ``Stage`` descriptions (built by
``fitnets.training.recipes``); the loop trains each one and never calls back into the code that built it.

A stage is data: its step (``fitnets.training.steps``), the parameters it optimises (and constrains, under
max-norm), the modules it saves, how it is validated and which weights it ends with. Every epoch ends with a
checkpoint written atomically, so an interrupted run loses at most the epoch in progress.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from fitnets.checkpoint import load_checkpoint, optimizer_from_flat, optimizer_to_flat, save_checkpoint
from fitnets.core.inputs import InputFormat
from fitnets.data.augment import Augmentation, RandomAugmentation
from fitnets.data.loader import batches
from fitnets.data.split import Split
from fitnets.errors import FitNetsError
from fitnets.training import distributed
from fitnets.training.evaluate import Validation
from fitnets.training.schema import OptimConfig
from fitnets.training.steps import Step
from fitnets.training.teacher_outputs import TeacherOutputs

log = logging.getLogger(__name__)


class NonFiniteLoss(FitNetsError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------- optimisation helpers

def build_optimizer(groups: list[dict[str, Any]], cfg: OptimConfig) -> torch.optim.Optimizer:
    """One optimizer over parameter groups; each group's ``lr_scale`` multiplies ``cfg.lr``. The groups given
    are not changed."""
    groups = [{k: v for k, v in g.items() if k != "lr_scale"} | {"base_lr": cfg.lr * g.get("lr_scale", 1.0)}
              for g in groups]
    for group in groups:
        group["lr"] = group["base_lr"]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.momentum > 0)
    if cfg.name == "rmsprop":  # the paper's optimiser, decay 0.9
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: OptimConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """The learning-rate multiplier at ``step`` of ``total``: cosine to zero, constant, or step decay."""
    if cfg.schedule == "step":
        epoch = step // steps_per_epoch
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones or [])
    if cfg.schedule == "constant" or total <= 1:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def constrained_layers(modules: Iterable[nn.Module], params: Iterable[nn.Parameter]) -> list[nn.Module]:
    """The convolutions and linear layers inside ``modules`` whose weight is among ``params``: what a
    max-norm constraint may touch in a stage that optimises ``params`` (stage 1 of FitNets leaves the student's
    layers above the guided one alone, constraint included)."""
    trained = {id(p) for p in params}
    return [layer for module in modules for layer in module.modules()
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and id(layer.weight) in trained]


@torch.no_grad()
def apply_max_norm(layers: Sequence[nn.Module], max_norm: float) -> None:
    """The paper's max-norm constraint (§4.1, from the maxout paper): each output unit's incoming weight vector
    (a conv filter, a linear unit's row) is rescaled to norm ≤ ``max_norm`` after each update. One bound for
    all layers here; the paper used 0.9 for conv filters and 1.9 / 1.9365 for the fc layers."""
    for layer in layers:
        weight = layer.weight
        assert isinstance(weight, torch.Tensor)  # the layers a stage constrains are convolutions and linear maps
        w = weight.view(weight.shape[0], -1)
        w.copy_(torch.renorm(w, 2, 0, max_norm))


# ---------------------------------------------------------------- stages

@dataclass
class Stage:
    """One stage of a run, as data.

    Attributes:
        name: ``"hint"`` or ``"main"``; names the checkpoint files and the metrics rows.
        step: the step module: ``step(x, y, index, epoch) -> (losses, logits)``.
        optimize: optimizer parameter groups (``{"params": [...], "lr_scale": s}``); max-norm, when the
            optimizer config asks for it, constrains these parameters' layers only.
        saves: the modules the stage checkpoints, under their key (``"model"``: the student); they are put
            in train mode for each epoch.
        validate: ``validate() -> (metrics, score)``, score higher-is-better; ``None`` when there is no
            validation data (nothing to select by: the stage ends with its last weights).
        epochs, optim, patience: as in the config; ``patience`` stops the stage after that many epochs without
            a better score (never without validation data: an epoch with no score is not a worse one).
        keep: ``"best"`` (end with the weights of the best score) or ``"last"``.
        teachers: the teacher-output sources the step reads (hints, logits), each prepared (a cache built)
            before the first epoch and asked for its figures (the store's hit rate) after each.
        about: one line for the plan: what the stage trains, on which loss.
        summary: what the stage reports once trained, added to its summary (FitNets' stage 1: the hint fit).
    """

    name: str
    step: Step
    optimize: list[dict[str, Any]]
    saves: dict[str, nn.Module]
    validate: Callable[[], Validation] | None
    epochs: int
    optim: OptimConfig
    patience: int | None = None
    keep: str = "best"
    teachers: tuple[TeacherOutputs, ...] = ()
    about: str = ""
    summary: Callable[[], dict[str, float]] | None = None

    def optimized(self) -> list[nn.Parameter]:
        return [p for group in self.optimize for p in group["params"]]

    def state(self) -> dict[str, torch.Tensor]:
        return {f"{key}.{name}": t for key, module in self.saves.items() for name, t in module.state_dict().items()}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        for key, module in self.saves.items():
            prefix = key + "."
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})


@dataclass
class RunContext:
    """What every stage of a run shares: data, run folder, batching and step settings."""

    train: Split
    run_dir: Path
    config: dict[str, Any]
    batch_size: int
    seed: int
    aug: RandomAugmentation = Augmentation()  # the random augmentation of the training batches
    inputs: InputFormat = InputFormat()   # the student's input format (channels_last)
    autocast: torch.dtype | None = None     # the student's forward/backward under autocast to this dtype
    log_every: int = 50
    progress: bool = True
    started: float = field(default_factory=time.perf_counter)  # the run's start (earlier sessions included)
    finished: dict[str, Any] = field(default_factory=dict)       # summaries of the stages already trained
    tensorboard: Any = None   # a ``TensorBoardLog`` (``--tensorboard``), written by rank 0 beside metrics.jsonl
    rows: int = 0             # metrics rows written so far (the TensorBoard epoch index across stages)

    def write_metrics(self, row: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.epoch(row, self.rows)
        self.rows += 1


@dataclass
class ResumePoint:
    """Where an interrupted run stopped: read from its ``last.safetensors``."""

    stage: str
    epoch: int          # the last finished epoch (0-based)
    best: float
    best_epoch: int
    stale: int
    tensors: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    finished: dict[str, Any] = field(default_factory=dict)  # summaries of the stages finished before it
    elapsed_s: float = 0.0                                   # training time up to this checkpoint
    config: dict[str, Any] = field(default_factory=dict)     # the config it was trained with

    @classmethod
    def read(cls, path: Path, tensors: bool = True) -> ResumePoint:
        """The checkpoint at ``path``; ``tensors=False``: its metadata alone (``tensors`` and the optimizer's
        tensors left empty), for what needs only where the run stopped and its config."""
        weights, meta = load_checkpoint(path, tensors)
        try:
            return cls(meta["stage"], meta["epoch"], meta["best"], meta["best_epoch"], meta["stale"], weights,
                       meta["optimizer"], meta.get("finished", {}), meta.get("elapsed_s", 0.0), meta.get("config", {}))
        except KeyError as err:
            raise FitNetsError(f"{path} is not a run checkpoint (no {err} in its metadata)") from None


# ---------------------------------------------------------------- the step and the loop

def train_step(step_fn: Callable, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, ...], epoch: int,
               inputs: InputFormat = InputFormat(), autocast: torch.dtype | None = None,
               max_norm: float | None = None, constrained: Sequence[nn.Module] = ()
               ) -> tuple[dict, torch.Tensor | None]:
    """One optimisation step: input preparation → forward (under autocast when asked) → backward → update →
    max-norm. The loop and ``fitnets bench step`` both call this, so the bench times what trains."""
    x, y, index = batch
    with torch.autocast(x.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        losses, logits = step_fn(inputs(x), y, index, epoch)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optimizer.step()
    if max_norm:  # on the layers this step updated (a frozen student's, in regressor-first epochs, is not)
        apply_max_norm([layer for layer in constrained if layer.weight.grad is not None], max_norm)
    return losses, logits


def train_one_epoch(stage: Stage, step_fn: Callable, optimizer: torch.optim.Optimizer, epoch: int,
                    ctx: RunContext) -> dict[str, float]:
    """One pass over the training data with ``step_fn`` (the stage's step, or its DDP wrapper); returns the
    epoch's mean losses, training accuracy (when the step gives logits) and throughput."""
    world = distributed.current()
    for module in stage.saves.values():
        module.train()
    constrained = constrained_layers(stage.saves.values(), stage.optimized()) if stage.optim.max_norm else []
    steps_per_epoch = math.ceil(len(ctx.train) / ctx.batch_size)
    total_steps = steps_per_epoch * stage.epochs
    device = ctx.train.device
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), device=device)
    counted = 0  # examples whose logits were counted for the training accuracy
    first_bad = torch.full((), -1, device=device, dtype=torch.long)  # first non-finite step, found without a sync
    seen, start, data_wait = 0, time.perf_counter(), 0.0
    bar = tqdm(total=steps_per_epoch, desc=f"{stage.name} {epoch + 1}/{stage.epochs}", leave=False,
               disable=not ctx.progress or not world.is_main, mininterval=0.5)

    def check() -> None:
        bad = int(distributed.all_reduce_max(first_bad))  # every rank stops together
        if bad >= 0:
            where = f"loss became non-finite in stage {stage.name}, epoch {epoch + 1}, step {bad + 1}"
            last = ctx.run_dir / "last.safetensors"
            if last.is_file():
                raise NonFiniteLoss(f"{where}; the last good checkpoint is kept in {last} — lower the learning "
                                    f"rate (optim.lr, or hint_stage.optim.lr in stage 1) and continue with "
                                    f"--resume {ctx.run_dir}")
            raise NonFiniteLoss(f"{where}, before any checkpoint was written — lower the learning rate and start "
                                "the run again")

    batch_iter = batches(ctx.train, ctx.batch_size, shuffle=True, seed=ctx.seed, epoch=epoch, aug=ctx.aug,
                         rank=world.rank, world_size=world.world_size)
    distributed.report_progress(f"stage {stage.name}, epoch {epoch + 1}")
    for step in range(steps_per_epoch):
        fetch = time.perf_counter()
        batch = next(batch_iter, None)
        if batch is None:
            break
        data_wait += time.perf_counter() - fetch
        # Under torchrun, where this rank is, step by step (one store write): a rank stuck reading its batch
        # while the others wait in the step's collective is then named by a timeout (``stall_error``).
        distributed.report_progress(f"stage {stage.name}, epoch {epoch + 1}, step {step + 1}")
        factor = lr_factor(stage.optim, epoch * steps_per_epoch + step, total_steps, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        losses, logits = train_step(step_fn, optimizer, batch, epoch, ctx.inputs, ctx.autocast, stage.optim.max_norm,
                                    constrained)
        y = batch[1]
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(losses["loss"].detach()),
                                torch.tensor(step, device=device), first_bad)
        for key, value in losses.items():
            sums[key] = sums.get(key, 0) + value.detach() * len(y)
        if logits is not None:
            correct += (logits.detach().argmax(1) == y).sum()
            counted += len(y)
        seen += len(y)
        bar.update(1)
        if (step + 1) % ctx.log_every == 0:  # the only host syncs of the epoch
            check()
            running = float(sums["loss"]) / seen
            bar.set_postfix(loss=f"{running:.4f}")
            if ctx.tensorboard is not None and world.is_main:
                ctx.tensorboard.step(stage.name, epoch * steps_per_epoch + step + 1, {"loss": running})
    bar.close()
    check()
    elapsed = time.perf_counter() - start
    keys = sorted(sums)
    totals = distributed.all_reduce_sum([sums[k] for k in keys] + [correct, torch.tensor(float(counted)),
                                                                    torch.tensor(float(seen))])
    seen_all, counted_all = float(totals[-1]), float(totals[-2])
    metrics = {key: float(value) / seen_all for key, value in zip(keys, totals)}
    if counted_all:
        metrics["train_acc"] = float(totals[-3]) / counted_all
    metrics.update(images_per_s=seen_all / elapsed, epoch_time_s=elapsed, data_wait_share=data_wait / elapsed,
                   lr=optimizer.param_groups[0]["lr"])
    return metrics


def _wrap(stage: Stage) -> Callable:
    """The step as the loop calls it: in DistributedDataParallel under torchrun. A stage that optimises only
    part of its step's parameters (stage 1: the student's layers up to the guided one) leaves the rest out of
    the graph, hence ``find_unused_parameters`` there."""
    if not distributed.current().enabled:
        return stage.step
    from torch.nn.parallel import DistributedDataParallel

    device = next(stage.step.parameters()).device
    partial = {id(p) for p in stage.step.parameters()} != {id(p) for p in stage.optimized()}
    return DistributedDataParallel(stage.step, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=partial)


def run_stage(stage: Stage, ctx: RunContext, resume: ResumePoint | None = None) -> dict[str, Any]:
    """Train ``stage`` for its epochs (continuing from ``resume`` when it is this stage's), checkpointing each
    epoch; leaves the saved modules holding the selected weights (the best by validation, or the last) and
    returns the stage's summary."""
    optimizer = build_optimizer(stage.optimize, stage.optim)
    main_rank = distributed.current().is_main
    start_epoch, best, best_epoch, stale = 0, -math.inf, -1, 0
    if resume is not None and resume.stage == stage.name:
        stage.load(resume.tensors)
        # The saved moments and step counts continue; the settings (learning rate, weight decay…) are this
        # config's, so that a resume with a new learning rate uses it (config.RESUME_MAY_CHANGE).
        settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        optimizer.load_state_dict(optimizer_from_flat(resume.tensors, resume.optimizer))
        for group, own in zip(optimizer.param_groups, settings):
            group.update(own)
        start_epoch = resume.epoch + 1
        best, best_epoch, stale = resume.best, resume.best_epoch, resume.stale
        log.info("resuming stage %s after epoch %d", stage.name, start_epoch)
        if stage.patience is not None and stale >= stage.patience:
            start_epoch = stage.epochs  # it had stopped early: nothing left to train
    if stage.patience is not None and stage.validate is None:  # no score: no epoch can be "no better"
        log.warning("stage %s: patience=%d has no effect without validation data (data.val_size=0): it trains all "
                    "%d epochs", stage.name, stage.patience, stage.epochs)
    if start_epoch < stage.epochs:
        for source in stage.teachers:
            source.prepare()
    best_path = ctx.run_dir / f"{stage.name}_best.safetensors"
    step_fn = _wrap(stage)
    best_state = None  # kept in memory too, so that every rank can end the stage with the same weights
    for epoch in range(start_epoch, stage.epochs):
        row = {"stage": stage.name, "epoch": epoch + 1, **stage.step.epoch_metrics(epoch)}
        try:
            row.update(train_one_epoch(stage, step_fn, optimizer, epoch, ctx))
            for source in stage.teachers:
                row.update(source.metrics())
            # every rank evaluates the whole validation set: the same score everywhere
            val, score = stage.validate() if stage.validate is not None else ({}, None)
        except RuntimeError as err:  # under torchrun: a rank that stalled shows up as a collective's timeout
            stalled = distributed.stall_error(err, f"stage {stage.name}, epoch {epoch + 1}")
            if stalled is None:
                raise
            raise stalled from err
        row.update(val)
        if score is not None and score > best:
            best, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in stage.state().items()}
            if main_rank:
                save_checkpoint(best_path, best_state, {"stage": stage.name, "epoch": epoch, "score": score})
        elif score is not None:
            stale += 1
        log.info("%s", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if main_rank:  # only rank 0 writes
            ctx.write_metrics(row)
            opt_tensors, opt_plain = optimizer_to_flat(optimizer.state_dict())
            save_checkpoint(ctx.run_dir / "last.safetensors", {**stage.state(), **opt_tensors},
                            {"stage": stage.name, "epoch": epoch, "best": best, "best_epoch": best_epoch,
                             "stale": stale, "optimizer": opt_plain, "config": ctx.config, "finished": ctx.finished,
                             "elapsed_s": time.perf_counter() - ctx.started})
        if stage.patience is not None and stale >= stage.patience:
            log.info("early stop in stage %s after epoch %d: no better validation for %d epochs",
                     stage.name, epoch + 1, stale)
            break
    if stage.keep == "best" and best_epoch >= 0:
        if best_state is None:  # the best epoch came before a resume: read it back
            best_state, _ = load_checkpoint(best_path)
        stage.load(best_state)
    summary = {"best_epoch": best_epoch + 1, "best_score": best, "epochs": stage.epochs}
    return summary | (stage.summary() if stage.summary is not None else {})
