"""The losses of FitNets' two stages (§2.1, §2.2) and the decaying teacher weight.

* Hint loss (stage 1): ``½ ‖u_h(x) − r(v_g(x))‖²`` per example: the sum over feature elements, then the mean
  over the batch.
* KD loss (stage 2, Hinton et al.): ``H(y, P_S) + λ · H(P_T^τ, P_S^τ)`` with ``P^τ = softmax(a / τ)``. The
  first term uses the un-softened student output. The paper and the authors' code apply no ``τ²`` factor;
  Hinton's ``τ²`` scaling is available with ``tau_squared=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fitnets.errors import FitNetsError


def _check_tensor(name: str, value, dims: int | None = None) -> None:
    if not isinstance(value, torch.Tensor):
        raise FitNetsError(f"{name} must be a torch.Tensor, got a {type(value).__name__}")
    if dims is not None and value.dim() != dims:
        raise FitNetsError(f"{name} must have {dims} dimensions, got shape {tuple(value.shape)}")


def hint_loss(hint: torch.Tensor, regressed: torch.Tensor) -> torch.Tensor:
    """``½ Σ (hint − regressed)²`` over each example's features, averaged over the batch (a scalar)."""
    _check_tensor("hint", hint)
    _check_tensor("regressed", regressed)
    if hint.shape != regressed.shape:
        raise FitNetsError(f"hint {tuple(hint.shape)} and regressed guided output {tuple(regressed.shape)} differ")
    if hint.dim() < 2:
        raise FitNetsError(f"hint_loss needs batches (B, features...), got shape {tuple(hint.shape)}")
    diff = (hint.to(regressed.dtype) - regressed).flatten(1)  # (B, features)
    return 0.5 * diff.pow(2).sum(dim=1).mean()


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float) -> torch.Tensor:
    """``H(P_T^τ, P_S^τ) = −Σ_k P_T^τ[k] log P_S^τ[k]``, averaged over the batch. It differs from the KL
    divergence by the teacher's entropy, a constant for the student, so the gradients are the same."""
    teacher_probs = F.softmax(teacher_logits.float() / temperature, dim=1)
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=1)
    return -(teacher_probs * student_log_probs).sum(dim=1).mean()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor,
            kd_weight: float, temperature: float = 3.0, tau_squared: bool = False) -> dict[str, torch.Tensor]:
    """The KD loss and its terms.

    Args:
        student_logits: ``(B, K)`` pre-softmax student outputs.
        teacher_logits: ``(B, K)`` pre-softmax teacher outputs (``None`` when ``kd_weight`` is 0).
        labels: ``(B,)`` class indices.
        kd_weight: λ, the weight of the teacher term.
        temperature: τ (3 in every experiment of the paper).
        tau_squared: multiply the teacher term by ``τ²`` (Hinton et al.), which the paper does not do.

    Returns:
        ``{"loss", "task_loss", "kd_loss"}``; ``kd_loss`` is the unweighted soft cross-entropy.
    """
    _check_tensor("student_logits", student_logits, 2)
    _check_tensor("labels", labels, 1)
    if labels.dtype.is_floating_point or len(labels) != len(student_logits):
        raise FitNetsError(f"labels must be {len(student_logits)} class indices (an integer tensor), got "
                           f"{labels.dtype} of shape {tuple(labels.shape)}")
    if teacher_logits is not None:
        _check_tensor("teacher_logits", teacher_logits, 2)
        if teacher_logits.shape != student_logits.shape:
            raise FitNetsError(f"teacher_logits {tuple(teacher_logits.shape)} and student_logits "
                               f"{tuple(student_logits.shape)} differ: do the teacher and the student have the same "
                               "number of classes?")
    task = F.cross_entropy(student_logits, labels)
    if kd_weight == 0 or teacher_logits is None:  # a zero-weight term is not computed
        return {"loss": task, "task_loss": task}
    soft = soft_cross_entropy(student_logits, teacher_logits, temperature)
    scale = kd_weight * (temperature ** 2 if tau_squared else 1.0)
    return {"loss": task + scale * soft, "task_loss": task, "kd_loss": soft}


def kd_weight_at(epoch: int, start: float = 4.0, end: float = 1.0, decay_epochs: int = 1) -> float:
    """λ at (0-based) ``epoch``: linear from ``start`` at epoch 0 to ``end`` at epoch ``decay_epochs − 1``,
    then constant (the paper's "λ decays linearly from 4 to 1", MNIST: over 150 epochs). A decay over one epoch
    cannot step: that epoch takes the decay's mean, ``(start + end) / 2`` — the weight the paper's schedule
    gives the KD term on average — rather than its end alone."""
    if decay_epochs <= 1:
        return (start + end) / 2
    t = min(epoch, decay_epochs - 1) / (decay_epochs - 1)
    return start + (end - start) * t
