"""One training step per method, as modules: ``step(x, y, index, epoch) -> (losses, logits)``.

A step is an ``nn.Module`` whose submodules are exactly what it trains (the student, and the regressor in the
hint stages); the teacher and its cache are plain attributes, so they never reach an optimizer or DDP. Under
``torchrun`` the engine wraps the step in ``DistributedDataParallel``, which then synchronises the gradients of
those submodules and nothing else. ``losses`` always has ``"loss"`` (what is minimised) and the named terms.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fitnets.core.fitnet import FitNet
from fitnets.core.losses import kd_loss

Losses = dict[str, torch.Tensor]
TeacherFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images, their indices) -> teacher output


class CEStep(nn.Module):
    """Standard backprop: cross-entropy on the labels. ``forward_fn`` (e.g. ``torch.compile(student)``) replaces
    the student's own call when given; it must share the student's parameters."""

    def __init__(self, student: nn.Module, forward_fn: Callable | None = None):
        super().__init__()
        self.student = student
        self.forward_fn = forward_fn

    def forward(self, x, y, index, epoch) -> tuple[Losses, torch.Tensor]:
        logits = (self.forward_fn if self.forward_fn is not None else self.student)(x)
        loss = F.cross_entropy(logits, y)
        return {"loss": loss, "task_loss": loss}, logits


class KDStep(nn.Module):
    """KD (§2.1): ``H(y, P_S) + λ(epoch)·H(P_T^τ, P_S^τ)``; ``teacher(x, index)`` is a live forward or a cache
    lookup, and is not called at all when λ is 0."""

    def __init__(self, student: nn.Module, teacher: TeacherFn, temperature: float, weight: Callable[[int], float],
                 tau_squared: bool = False, forward_fn: Callable | None = None):
        super().__init__()
        self.student = student
        self.teacher, self.temperature, self.weight, self.tau_squared = teacher, temperature, weight, tau_squared
        self.forward_fn = forward_fn

    def forward(self, x, y, index, epoch) -> tuple[Losses, torch.Tensor]:
        kd_weight = self.weight(epoch)
        teacher_logits = self.teacher(x, index) if kd_weight else None
        logits = (self.forward_fn if self.forward_fn is not None else self.student)(x)
        return kd_loss(logits, teacher_logits, y, kd_weight, self.temperature, self.tau_squared), logits


class HintStep(nn.Module):
    """FitNets' stage 1 (§2.2): the hint loss; both networks stop at their layer. ``hints(x, index)``, when
    given, supplies the teacher's hint features (e.g. from a cache)."""

    def __init__(self, fitnet: FitNet, hints: TeacherFn | None = None):
        super().__init__()
        self.student, self.regressor = fitnet.student, fitnet.regressor
        self.fitnet, self.hints = fitnet, hints

    def forward(self, x, y, index, epoch) -> tuple[Losses, None]:
        loss = self.fitnet.hint_loss(x, self.hints(x, index) if self.hints is not None else None)
        return {"loss": loss, "hint_loss": loss}, None


class OneStageStep(nn.Module):
    """The common one-stage "FitNet" of later toolkits (not the paper's method): CE + β·MSE, no KD term."""

    def __init__(self, fitnet: FitNet, beta: float, hints: TeacherFn | None = None):
        super().__init__()
        self.student, self.regressor = fitnet.student, fitnet.regressor
        self.fitnet, self.beta, self.hints = fitnet, beta, hints

    def forward(self, x, y, index, epoch) -> tuple[Losses, torch.Tensor]:
        return self.fitnet.onestage_losses(x, y, self.beta, self.hints(x, index) if self.hints is not None else None)
