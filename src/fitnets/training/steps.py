"""One training step per kind of loss, as modules: ``step(x, y, index, epoch) -> (losses, logits)``.

A step is an ``nn.Module`` whose submodules are exactly what it trains (the student, and the regressor in the
hint stages); the teacher's outputs come from a ``TeacherOutputs`` source held as a plain attribute, so the
teacher never reaches an optimizer or DDP. Under ``torchrun`` the engine wraps the step in
``DistributedDataParallel``, which then synchronises the gradients of those submodules and nothing else.
``losses`` always has ``"loss"`` (what is minimised) and the named terms; ``logits`` is the student's output
when the step computes it (the engine then counts training accuracy), else ``None``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fitnets.core.fitnet import FitNet
from fitnets.core.losses import kd_loss, kd_weight_at
from fitnets.core.outputs import logits_of
from fitnets.training.schema import KDConfig
from fitnets.training.teacher_outputs import TeacherOutputs

Losses = dict[str, torch.Tensor]


class Step(nn.Module):
    """The base of every step: ``forward(x, y, index, epoch) -> (losses, logits or None)``."""

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        """Values the step uses for a whole epoch (λ for KD), logged with the epoch's metrics."""
        return {}


class _KDWeight:
    """λ(epoch) of a step's KD term (§2.1): linear from ``kd.weight_start`` to ``kd.weight_end`` over
    ``decay_epochs``; 0 without a ``kd`` config. Logged with each epoch's metrics."""

    kd: KDConfig | None
    decay_epochs: int

    def kd_weight(self, epoch: int) -> float:
        if self.kd is None:
            return 0.0
        return kd_weight_at(epoch, self.kd.weight_start, self.kd.weight_end, self.decay_epochs)

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        return {"kd_weight": self.kd_weight(epoch)} if self.kd is not None else {}


class CEStep(Step):
    """Standard backprop: cross-entropy on the labels. ``forward_fn`` (e.g. ``torch.compile(student)``) replaces
    the student's own call when given; it must share the student's parameters. The logits are found in the
    forward's output by ``fitnets.core.outputs``'s rule (or ``logits_key``)."""

    def __init__(self, student: nn.Module, forward_fn: Callable | None = None, logits_key: str | int | None = None):
        super().__init__()
        self.student = student
        self.forward_fn, self.logits_key = forward_fn, logits_key

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of((self.forward_fn if self.forward_fn is not None else self.student)(x), self.logits_key)

    def forward(self, x, y, index, epoch) -> tuple[Losses, torch.Tensor]:
        logits = self.logits(x)
        loss = F.cross_entropy(logits, y)
        return {"loss": loss, "task_loss": loss}, logits


class KDStep(_KDWeight, CEStep):
    """KD (§2.1): ``H(y, P_S) + λ(epoch)·H(P_T^τ, P_S^τ)``, λ from ``kd`` (linear from ``weight_start`` to
    ``weight_end`` over ``decay_epochs``, or over ``epochs`` when that is not set). The teacher is not asked at
    all when λ is 0."""

    def __init__(self, student: nn.Module, teacher: TeacherOutputs, kd: KDConfig, epochs: int,
                 forward_fn: Callable | None = None, logits_key: str | int | None = None):
        super().__init__(student, forward_fn, logits_key)
        self.teacher, self.kd, self.decay_epochs = teacher, kd, kd.decay_epochs or epochs

    def forward(self, x, y, index, epoch) -> tuple[Losses, torch.Tensor]:
        kd_weight = self.kd_weight(epoch)
        teacher_logits = self.teacher(x, index) if kd_weight else None
        logits = self.logits(x)
        kd = self.kd
        assert kd is not None  # a KDStep is built with its KD config
        return kd_loss(logits, teacher_logits, y, kd_weight, kd.temperature, kd.tau_squared), logits


class HintStep(Step):
    """FitNets' stage 1 (§2.2): the hint loss, no labels; both networks stop at their layer (``cut``; off only
    to measure what the cut saves). With ``regressor_first`` = N, the first N epochs train the regressor alone
    against the frozen student (its weights fixed; its batch-norm statistics, in train mode, still follow the
    data) — the "regressor first, then the guided layers" reading of Algorithm 1, not the paper's joint stage."""

    def __init__(self, fitnet: FitNet, hints: TeacherOutputs, cut: bool = True, regressor_first: int = 0):
        super().__init__()
        self.student, self.regressor = fitnet.student, fitnet.regressor
        self.fitnet, self.hints, self.cut, self.regressor_first = fitnet, hints, cut, regressor_first

    def forward(self, x, y, index, epoch) -> tuple[Losses, None]:
        loss = self.fitnet.hint_loss(x, self.hints(x, index), cut=self.cut,
                                     train_student=epoch >= self.regressor_first)
        return {"loss": loss, "hint_loss": loss}, None

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        return {"student_frozen": float(epoch < self.regressor_first)} if self.regressor_first else {}


class OneStageStep(_KDWeight, Step):
    """The common one-stage "FitNet" of later toolkits (not the paper's method): CE + β·MSE, no KD term — or,
    with ``kd`` and the teacher's ``logits``, CE + β·MSE + λ(epoch)·H(P_T^τ, P_S^τ) ("FitNet + KD"), λ as in
    ``KDStep``."""

    def __init__(self, fitnet: FitNet, beta: float, hints: TeacherOutputs, kd: KDConfig | None = None,
                 logits: TeacherOutputs | None = None, epochs: int = 1):
        super().__init__()
        self.student, self.regressor = fitnet.student, fitnet.regressor
        self.fitnet, self.beta, self.hints = fitnet, beta, hints
        self.kd, self.logits = kd, logits
        self.decay_epochs = (kd.decay_epochs if kd is not None else None) or epochs

    def forward(self, x, y, index, epoch) -> tuple[Losses, torch.Tensor]:
        losses, logits = self.fitnet.onestage_losses(x, y, self.hints(x, index), self.beta)
        weight = self.kd_weight(epoch)
        if weight:  # λ > 0 only with a KD config, which comes with the teacher's logits
            assert self.kd is not None and self.logits is not None
            kd = kd_loss(logits, self.logits(x, index), y, weight, self.kd.temperature, self.kd.tau_squared)
            losses.update(kd_loss=kd["kd_loss"], loss=kd["loss"] + self.beta * losses["hint_mse"])
        return losses, logits
