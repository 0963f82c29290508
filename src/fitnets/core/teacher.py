"""The teacher, wrapped once so the rest of the code cannot get it wrong.

``FrozenTeacher`` puts the model in eval mode and turns its gradients off for good, runs every forward under
``torch.no_grad()`` (no autograd graph), and is not an ``nn.Module``: it cannot end up in an optimizer, in a
parent's ``.train()``, in ``parameters()`` or in a ``state_dict`` of the distillation state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fitnets.core.fold import Folded, fold_batchnorm
from fitnets.core.inputs import InputFormat
from fitnets.core.outputs import logits_of
from fitnets.core.taps import tap


class FrozenTeacher:
    """A trained network used only for inference.

    Args:
        model: the trained teacher.
        dtype: run the teacher in this dtype (e.g. ``torch.bfloat16``); outputs are returned in float32.
        channels_last: run the teacher in the channels_last memory format (often a faster forward; the
            README's speed section gives measured figures; the result is the same up to float rounding).
        compile: run the logits forward through ``torch.compile`` with inductor's freezing (weights taken as
            constants, as they are for a teacher).
        fold_bn: fold each batch norm that follows a convolution into it (``fitnets.core.fold``; the outputs are
            the same up to float rounding, the forward does less work). The model passed in is not changed:
            folding works on a copy.
        logits_key: where the logits are in the model's output when ``fitnets.core.outputs``'s rule does not
            find them.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None, channels_last: bool = False,
                 compile: bool = False, fold_bn: bool = False, logits_key: str | int | None = None):
        self.logits_key = logits_key
        self._folds: dict[str, Folded] = {}
        if fold_bn:
            model, self._folds = fold_batchnorm(model)
        self.inputs = InputFormat(channels_last, dtype)
        self._model = self.inputs.apply_to(model.eval().requires_grad_(False))
        # The logits go through torch.compile when asked; `features` keeps the eager forward, whose layer
        # hooks (the taps) a compiled graph would not run.
        self._forward = torch.compile(self._model, options={"freezing": True}) if compile else self._model

    @property
    def module(self) -> nn.Module:
        """The wrapped model (read-only use: shapes, paths, export)."""
        return self._model

    @property
    def dtype(self) -> torch.dtype | None:
        return self.inputs.dtype

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        self._model.eval()  # cheap, and it undoes any `.train()` called on the raw model from outside
        return self.inputs(x)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` in float32."""
        return logits_of(self._forward(self._prepare(x)), self.logits_key).float()

    @torch.no_grad()
    def features(self, x: torch.Tensor, paths: Sequence[str], stop: bool = True) -> list[torch.Tensor]:
        """The outputs of the layers at ``paths`` in float32; the forward stops after the last of them (unless
        not ``stop``)."""
        outputs = [f.float() for f in tap(self._model, self._prepare(x), paths, stop=stop)]
        # A tap at a folded convolution gets the convolution's own output back, as if nothing were folded.
        return [self._folds[p].unfold_output(f) if p in self._folds else f for p, f in zip(paths, outputs)]


class TeacherOutputs:
    """What a training step asks for the teacher's outputs on a batch (logits for KD, hint features for FitNets'
    stage 1): ``prepare()`` once before a stage trains, then ``source(x, key)`` for each batch, ``key`` being
    each example's key (``fitnets.data.loader.batches``). ``fitnets.training.teacher_outputs`` picks which
    source a run uses: live, cached, or the teacher-output store."""

    def prepare(self) -> None:
        """Do any work that must precede the first step (building a cache); cheap when already done."""

    def __call__(self, x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self) -> dict[str, float]:
        """Figures about the epoch just trained, for its metrics row (the store's hit rate); called once per
        epoch on every rank."""
        return {}
