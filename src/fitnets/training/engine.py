"""The training engine: one loop for every method, each method a step module returning named losses.

A *stage* is a number of epochs of one step function with one optimizer and one model-selection rule:

* ``ce``: the student (or a teacher being trained) with cross-entropy — "standard backprop";
* ``kd``: cross-entropy plus the teacher's softened outputs, λ decaying over the epochs (§2.1);
* ``hint``: FitNets' stage 1, the hint loss on the student's lower layers and the regressor (§2.2).

FitNets is the ``hint`` stage followed by a ``kd`` stage (Algorithm 1). Every epoch ends with a checkpoint
written atomically, so an interrupted run loses at most the epoch in progress.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from fitnets.training import distributed
from fitnets.checkpoint import load_checkpoint, optimizer_from_flat, optimizer_to_flat, save_checkpoint
from fitnets.training.config import OptimConfig
from fitnets.data.loader import ImageData, batches
from fitnets.errors import FitNetsError
from fitnets.core.fitnet import FitNet
from fitnets.core.modes import eval_mode

log = logging.getLogger(__name__)


class NonFiniteLoss(FitNetsError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------- optimisation helpers

def build_optimizer(groups: list[dict[str, Any]], cfg: OptimConfig) -> torch.optim.Optimizer:
    """One optimizer over parameter groups; each group's ``lr_scale`` multiplies ``cfg.lr``."""
    for group in groups:
        group["base_lr"] = cfg.lr * group.pop("lr_scale", 1.0)
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


@torch.no_grad()
def apply_max_norm(modules: list[nn.Module], max_norm: float) -> None:
    """The paper's max-norm constraint (§4.1, from the maxout paper): each output unit's incoming weight vector
    (a conv filter, a linear unit's row) is rescaled to norm ≤ ``max_norm`` after each update. One bound for
    all layers here; the paper used 0.9 for conv filters and 1.9 / 1.9365 for the fc layers."""
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                w = layer.weight.view(layer.weight.shape[0], -1)
                w.copy_(torch.renorm(w, 2, 0, max_norm))


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: ImageData, batch_size: int = 1000,
                      channels_last: bool = False) -> dict[str, float]:
    correct = torch.zeros((), device=data.device)
    loss_sum = torch.zeros((), device=data.device)
    with eval_mode(model):
        for x, y, _ in batches(data, batch_size):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x).float()
            correct += (logits.argmax(1) == y).sum()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
    n = max(len(data), 1)
    return {"acc": correct.item() / n, "loss": loss_sum.item() / n}


@torch.no_grad()
def evaluate_agreement(student: nn.Module, teacher: Callable[[torch.Tensor], torch.Tensor], data: ImageData,
                       batch_size: int = 1000) -> dict[str, float]:
    """How closely the student follows the teacher: top-1 agreement and ``KL(P_T ‖ P_S)`` (τ = 1), averaged
    over ``data``."""
    agree = torch.zeros((), device=data.device)
    kl = torch.zeros((), device=data.device)
    with eval_mode(student):
        for x, _, _ in batches(data, batch_size):
            s, t = student(x).float(), teacher(x).float()
            agree += (s.argmax(1) == t.argmax(1)).sum()
            kl += F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), log_target=True, reduction="sum")
    n = max(len(data), 1)
    return {"agreement": agree.item() / n, "kl": kl.item() / n}


@torch.no_grad()
def evaluate_hint(fitnet: FitNet, data: ImageData, batch_size: int = 1000) -> float:
    total = torch.zeros((), device=data.device)
    with eval_mode(fitnet.student, fitnet.regressor):
        for x, _, _ in batches(data, batch_size):
            total += fitnet.hint_loss(x) * len(x)
    return total.item() / max(len(data), 1)


# ---------------------------------------------------------------- stages and the loop

@dataclass
class Stage:
    """One stage of a run.

    Attributes:
        name: ``"hint"`` or ``"main"``; names the checkpoint files.
        step: the step module (``fitnets.training.steps``): ``step(x, y, index, epoch) -> (losses, logits)``.
        groups: optimizer parameter groups (``{"params": [...], "lr_scale": s}``).
        modules: the trained modules (put in train mode, saved in checkpoints under their key).
        evaluate: returns validation metrics and a score where higher is better (``None``: no selection).
        epochs, optim, patience: as in the config.
        select_best: end the stage with the best weights by validation score (else the last).
    """

    name: str
    step: nn.Module
    groups: list[dict[str, Any]]
    modules: dict[str, nn.Module]
    evaluate: Callable[[], tuple[dict[str, float], float | None]]
    epochs: int
    optim: OptimConfig
    patience: int | None = None
    select_best: bool = True
    extra_metrics: Callable[[int], dict[str, float]] = field(default=lambda epoch: {})


@dataclass
class RunContext:
    """What every stage shares: data, run folder, resume point, settings."""

    train: ImageData
    run_dir: Path
    config: dict[str, Any]
    batch_size: int
    seed: int
    pad: int = 0
    flip: bool = False
    channels_last: bool = False
    log_every: int = 50
    progress: bool = True
    resume: dict[str, Any] | None = None  # {"tensors", "meta"} of last.safetensors
    autocast: torch.dtype | None = None     # the student's forward/backward under autocast to this dtype

    def write_metrics(self, row: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


def _state(stage: Stage) -> dict[str, torch.Tensor]:
    return {f"{key}.{name}": t for key, module in stage.modules.items() for name, t in module.state_dict().items()}


def _load_modules(stage: Stage, tensors: dict[str, torch.Tensor]) -> None:
    for key, module in stage.modules.items():
        prefix = key + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})


def train_one_epoch(stage: Stage, optimizer: torch.optim.Optimizer, epoch: int, ctx: RunContext,
                    step_fn: nn.Module | None = None) -> dict[str, float]:
    """One pass over the training data; returns the epoch's mean losses, accuracy and throughput.
    ``step_fn`` is the stage's step as called (the step itself, or its DDP wrapper)."""
    step_fn = step_fn or stage.step
    world = distributed.current()
    for module in stage.modules.values():
        module.train()
    steps_per_epoch = math.ceil(len(ctx.train) / ctx.batch_size)
    total_steps = steps_per_epoch * stage.epochs
    device = ctx.train.device
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), device=device)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)  # first non-finite step, found without a sync
    seen, start = 0, time.perf_counter()
    bar = tqdm(total=steps_per_epoch, desc=f"{stage.name} {epoch + 1}/{stage.epochs}", leave=False,
               disable=not ctx.progress or not world.is_main, mininterval=0.5)

    def check() -> None:
        bad = int(distributed.all_reduce_max(first_bad))  # every rank stops together
        if bad >= 0:
            raise NonFiniteLoss(f"loss became non-finite in stage {stage.name}, epoch {epoch + 1}, step {bad + 1}; "
                                f"the last good checkpoint is kept in {ctx.run_dir / 'last.safetensors'} — lower "
                                "the learning rate and resume")

    batch_iter = batches(ctx.train, ctx.batch_size, shuffle=True, seed=ctx.seed, epoch=epoch, pad=ctx.pad,
                         flip=ctx.flip, rank=world.rank, world_size=world.world_size)
    data_wait = 0.0
    for step in range(steps_per_epoch):
        fetch = time.perf_counter()
        x, y, index = next(batch_iter, (None, None, None))
        if x is None:
            break
        data_wait += time.perf_counter() - fetch
        factor = lr_factor(stage.optim, epoch * steps_per_epoch + step, total_steps, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        if ctx.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=ctx.autocast or torch.bfloat16, enabled=ctx.autocast is not None):
            losses, logits = step_fn(x, y, index, epoch)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        if stage.optim.max_norm:
            apply_max_norm(list(stage.modules.values()), stage.optim.max_norm)
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(losses["loss"].detach()),
                                torch.tensor(step, device=device), first_bad)
        for key, value in losses.items():
            sums[key] = sums.get(key, 0) + value.detach() * len(y)
        if logits is not None:
            correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        bar.update(1)
        if (step + 1) % ctx.log_every == 0:  # the only host syncs of the epoch
            check()
            bar.set_postfix(loss=f"{float(sums['loss']) / seen:.4f}")
    bar.close()
    check()
    elapsed = time.perf_counter() - start
    keys = sorted(sums)
    totals = distributed.all_reduce_sum([sums[k] for k in keys] + [correct, torch.tensor(float(seen))])
    seen_all = float(totals[-1])
    metrics = {key: float(value) / seen_all for key, value in zip(keys, totals)}
    if "task_loss" in sums:
        metrics["train_acc"] = float(totals[-2]) / seen_all
    metrics.update(images_per_s=seen_all / elapsed, epoch_time_s=elapsed, data_wait_share=data_wait / elapsed,
                   lr=optimizer.param_groups[0]["lr"])
    return metrics


def _wrap(stage: Stage) -> nn.Module:
    """The step as the loop calls it: in DistributedDataParallel under torchrun. Stage 1 leaves the student's
    upper layers out of the graph, hence ``find_unused_parameters`` there."""
    if not distributed.current().enabled:
        return stage.step
    from torch.nn.parallel import DistributedDataParallel

    device = next(stage.step.parameters()).device
    return DistributedDataParallel(stage.step, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=stage.name == "hint")


def run_stage(stage: Stage, ctx: RunContext) -> dict[str, Any]:
    """Train ``stage`` for its epochs (or from the resume point), checkpointing each epoch; leaves the modules
    holding the selected weights (the best by validation, or the last) and returns the stage's summary."""
    optimizer = build_optimizer(stage.groups, stage.optim)
    main_rank = distributed.current().is_main
    start_epoch, best, best_epoch, stale = 0, -math.inf, -1, 0
    resume = ctx.resume
    if resume and resume["meta"]["stage"] == stage.name:
        _load_modules(stage, resume["tensors"])
        optimizer.load_state_dict(optimizer_from_flat(resume["tensors"], resume["meta"]["optimizer"]))
        start_epoch = resume["meta"]["epoch"] + 1
        best, best_epoch, stale = resume["meta"]["best"], resume["meta"]["best_epoch"], resume["meta"]["stale"]
        log.info("resuming stage %s after epoch %d", stage.name, start_epoch)
    best_path = ctx.run_dir / f"{stage.name}_best.safetensors"
    step_fn = _wrap(stage)
    best_state = None  # kept in memory too, so that every rank can end the stage with the same weights
    for epoch in range(start_epoch, stage.epochs):
        row = {"stage": stage.name, "epoch": epoch + 1, **stage.extra_metrics(epoch)}
        row.update(train_one_epoch(stage, optimizer, epoch, ctx, step_fn))
        val, score = stage.evaluate()  # every rank evaluates the whole validation set: same score everywhere
        row.update(val)
        if score is not None and score > best:
            best, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in _state(stage).items()}
            if main_rank:
                save_checkpoint(best_path, best_state, {"stage": stage.name, "epoch": epoch, "score": score})
        else:
            stale += 1
        log.info("%s", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if main_rank:  # only rank 0 writes
            ctx.write_metrics(row)
            opt_tensors, opt_plain = optimizer_to_flat(optimizer.state_dict())
            save_checkpoint(ctx.run_dir / "last.safetensors", {**_state(stage), **opt_tensors},
                            {"stage": stage.name, "epoch": epoch, "best": best, "best_epoch": best_epoch,
                             "stale": stale, "optimizer": opt_plain, "config": ctx.config})
        if stage.patience is not None and stale >= stage.patience:
            log.info("early stop in stage %s after epoch %d: no better validation for %d epochs",
                     stage.name, epoch + 1, stale)
            break
    ctx.resume = None
    if stage.select_best and best_epoch >= 0:
        if best_state is None:  # the best epoch came before a resume: read it back
            best_state, _ = load_checkpoint(best_path)
        _load_modules(stage, best_state)
    return {"best_epoch": best_epoch + 1, "best_score": best}
