"""Evaluation: accuracy, agreement with the teacher, validation hint loss — and the two validation rules a
stage selects its weights by (``AccuracyEval``, ``HintEval``). Every batch goes through the same
``InputFormat`` as in training."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from fitnets.core.fitnet import FitNet
from fitnets.core.inputs import InputFormat
from fitnets.core.modes import eval_mode
from fitnets.core.outputs import logits_of
from fitnets.core.representations import linear_cka, probe_accuracy, probe_features
from fitnets.data.loader import batches
from fitnets.data.split import Split
from fitnets.imports import is_object_name

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: Split, batch_size: int = 1000,
                      inputs: InputFormat = InputFormat(), logits_key: str | int | None = None) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` over ``data`` (eval mode); the logits are found in
    its output by ``fitnets.core.outputs``'s rule (or ``logits_key``)."""
    correct = torch.zeros((), device=data.device)
    loss_sum = torch.zeros((), device=data.device)
    with eval_mode(model):
        for x, y, _ in batches(data, batch_size):
            logits = logits_of(model(inputs(x)), logits_key).float()
            correct += (logits.argmax(1) == y).sum()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
    n = max(len(data), 1)
    return {"acc": correct.item() / n, "loss": loss_sum.item() / n}


@torch.no_grad()
def evaluate_agreement(student: nn.Module, teacher: Callable[[torch.Tensor], torch.Tensor], data: Split,
                       batch_size: int = 1000, inputs: InputFormat = InputFormat(),
                       logits_key: str | int | None = None) -> dict[str, float]:
    """How closely the student follows the teacher: top-1 agreement and ``KL(P_T ‖ P_S)`` (τ = 1), averaged
    over ``data``. ``teacher`` is a frozen teacher (it prepares its own input)."""
    agree = torch.zeros((), device=data.device)
    kl = torch.zeros((), device=data.device)
    with eval_mode(student):
        for x, _, _ in batches(data, batch_size):
            s, t = logits_of(student(inputs(x)), logits_key).float(), teacher(x).float()
            agree += (s.argmax(1) == t.argmax(1)).sum()
            kl += F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), log_target=True, reduction="sum")
    n = max(len(data), 1)
    return {"agreement": agree.item() / n, "kl": kl.item() / n}


@torch.no_grad()
def evaluate_hint(fitnet: FitNet, data: Split, batch_size: int = 1000, inputs: InputFormat = InputFormat(),
                  diagnostics: int = 0, hint_probe_acc: float | None = None) -> dict[str, float]:
    """Over ``data`` (student and regressor in eval mode): the mean stage-1 hint loss, and ``r2``, the share of
    the hint's variance the regressor explains, ``1 − SSE/SST`` over all hint features (SST around each
    feature's mean over ``data``; 1: the hint reproduced exactly, 0: no better than each feature's mean; the
    fit §5 of the paper relies on stage 1 reaching).

    With ``diagnostics`` = n > 0, also what the features hold without the regressor, on the first n examples
    (``fitnets.core.representations``): ``guided_probe_acc`` and ``hint_probe_acc``, the held-out accuracy of a
    closed-form linear probe on the student's guided features and on the teacher's hint, and ``cka``, the linear
    CKA between the two. The teacher is frozen, so a caller measuring every epoch passes the first epoch's
    ``hint_probe_acc`` back in and it is not fitted again."""
    n = max(len(data), 1)
    sse = torch.zeros((), dtype=torch.float64, device=data.device)
    sum_u = sum_u2 = None
    kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    room = diagnostics
    with eval_mode(fitnet.student, fitnet.regressor):
        for x, y, _ in batches(data, batch_size):
            x = inputs(x)
            hint_map = fitnet.hint_features(x)
            guided = fitnet.guided_features(x)
            if room > 0:
                kept.append((guided[:room].float(), hint_map[:room].float(), y[:room]))
                room -= len(kept[-1][2])
            hint = hint_map.double().flatten(1)
            regressed = fitnet.regressor(guided).double().flatten(1)
            sse += (hint - regressed).pow(2).sum()
            sum_u = hint.sum(0) if sum_u is None else sum_u + hint.sum(0)
            sum_u2 = hint.pow(2).sum(0) if sum_u2 is None else sum_u2 + hint.pow(2).sum(0)
    if sum_u is None or sum_u2 is None:
        return {"loss": 0.0, "r2": 0.0}
    sst = (sum_u2 - sum_u.pow(2) / n).sum()
    result = {"loss": 0.5 * sse.item() / n, "r2": 1.0 - sse.item() / sst.item() if sst.item() > 0 else 0.0}
    if kept:
        guided, hint, labels = (torch.cat(parts) for parts in zip(*kept))
        result.update(representation_fit(guided, hint, labels, data.num_classes, hint_probe_acc))
    return result


@torch.no_grad()
def first_features(fitnet: FitNet, data: Split, n: int, batch_size: int = 1000,
                   inputs: InputFormat = InputFormat()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The guided features, the teacher's hint and the labels of the first ``n`` examples of ``data`` (eval
    mode), reading no further: what ``representation_fit`` needs when no R² is wanted (``fitnets diagnose``)."""
    kept = []
    with eval_mode(fitnet.student, fitnet.regressor):
        for x, y, _ in batches(data, batch_size):
            x = inputs(x)
            kept.append((fitnet.guided_features(x)[:n].float(), fitnet.hint_features(x)[:n].float(), y[:n]))
            n -= len(kept[-1][2])
            if n <= 0:
                break
    guided, hint, labels = (torch.cat(parts) for parts in zip(*kept))
    return guided, hint, labels


def representation_fit(guided: torch.Tensor, hint: torch.Tensor, labels: torch.Tensor, classes: int,
                       hint_probe_acc: float | None = None) -> dict[str, float]:
    """The linear probe on each side and the linear CKA between them, for the same examples (the hint's probe
    as given, when it is)."""
    if hint_probe_acc is None:
        hint_probe_acc = probe_accuracy(probe_features(hint), labels, classes)
    return {"guided_probe_acc": probe_accuracy(probe_features(guided), labels, classes),
            "hint_probe_acc": hint_probe_acc, "cka": linear_cka(guided, hint)}


Validation = tuple[dict[str, float], float]  # (metrics to log, score: higher is better)


@dataclass
class AccuracyEval:
    """Validation accuracy and loss of ``model``; the score is the accuracy."""

    model: nn.Module
    data: Split
    batch_size: int = 1000
    inputs: InputFormat = InputFormat()
    logits_key: str | int | None = None

    def __call__(self) -> Validation:
        val = evaluate_accuracy(self.model, self.data, self.batch_size, self.inputs, self.logits_key)
        return {"val_acc": val["acc"], "val_loss": val["loss"]}, val["acc"]


DIAGNOSTICS = ("guided_probe_acc", "hint_probe_acc", "cka")  # evaluate_hint's keys with diagnostics on


@dataclass
class HintEval:
    """Validation hint loss of a FitNet's stage 1 (Algorithm 1 keeps the stage-1 model with the lowest one);
    the score is its negative. With ``diagnostics`` = n > 0, also the probes and CKA on n examples
    (``evaluate_hint``), logged as ``val_guided_probe_acc``, ``val_hint_probe_acc``, ``val_cka``."""

    fitnet: FitNet
    data: Split
    batch_size: int = 1000
    inputs: InputFormat = InputFormat()
    diagnostics: int = 0
    _hint_probe_acc: float | None = field(default=None, init=False, repr=False)  # the frozen teacher's, once

    def __call__(self) -> Validation:
        val = evaluate_hint(self.fitnet, self.data, self.batch_size, self.inputs, self.diagnostics,
                            self._hint_probe_acc)
        self._hint_probe_acc = val.get("hint_probe_acc")
        metrics = {"val_hint_loss": val["loss"], "val_hint_r2": val["r2"]}
        return metrics | {f"val_{key}": val[key] for key in DIAGNOSTICS if key in val}, -val["loss"]


WEAK_FIT = 0.2  # a hint stage ending below this R² gets a warning


@dataclass
class HintFit:
    """What FitNets' stage 1 reports once trained: the fit its selected weights reach on the validation split
    (``val_hint_r2``), with a warning when it is weak — a student whose lower layers did not learn the hint
    starts stage 2 from little (§5 of the paper relies on stage 1 fitting)."""

    validate: HintEval
    teacher: str   # as the run names them, for the advice
    student: str

    def __call__(self) -> dict[str, float]:
        metrics = self.validate()[0]
        r2 = metrics["val_hint_r2"]
        log.info("hint stage: the regressor explains %.1f%% of the hint's variance on the validation split (R²)",
                 100 * r2)
        if r2 < WEAK_FIT:
            fitnet = self.validate.fitnet
            named = not any(is_object_name(m) for m in (self.teacher, self.student))
            log.warning("weak hint fit: R² = %.2f < %.1f for hint %s → guided %s. Try a shallower hint layer, a deeper "
                        "guided layer, more hint epochs, or %s to compare pairs", r2, WEAK_FIT, fitnet.hint,
                        fitnet.guided, f"`fitnets suggest {self.teacher} {self.student}`" if named else
                        "fitnets.tools.suggest's rank(layers(teacher, x), layers(student, x)) on your models "
                        "(README: choosing the layers)")
        return {key: value for key, value in metrics.items() if key != "val_hint_loss"}
