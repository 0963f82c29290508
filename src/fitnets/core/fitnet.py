"""``FitNet``: the distillation state of FitNets' stage 1 — teacher, student, hint and guided layers, regressor.

The two-stage algorithm (Algorithm 1 of the paper) is run by ``fitnets.training.engine``; this object answers what
stage 1 needs: the hint loss of a batch, with both networks cut short, and which student parameters it
trains.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from fitnets.core.features import TokenLayout, patch_grid, recorded_maps, token_layout
from fitnets.core.inputs import batch_checked
from fitnets.core.losses import hint_loss
from fitnets.core.modes import eval_mode
from fitnets.core.outputs import logits_of
from fitnets.core.regressor import build_regressor, describe_regressor, hint_activation
from fitnets.core.taps import LayerRef, dry_run, forward_with_taps, tap
from fitnets.core.teacher import FrozenTeacher
from fitnets.errors import FitNetsError

log = logging.getLogger(__name__)


def _layout(out: torch.Tensor, maps: list, image_hw: tuple[int, int], extra: int | None,
            setting: str) -> TokenLayout | None:
    """A token output ``(B, N, C)`` gets its layout on the patch grid (the model's, from the ``maps`` its
    forward made before it, when one fits); maps and flat features none."""
    if out.dim() != 3:
        return None
    return token_layout(out.shape[1], image_hw, extra, patch_grid(maps, (out.shape[1], out.shape[2])), setting)


class FitNet:
    """Hint-based training of ``student``'s lower part from ``teacher``'s middle layer.

    Args:
        teacher: the trained teacher (an ``nn.Module``, or an already wrapped ``FrozenTeacher``).
        student: the student to train.
        hint: module path of the teacher's hint layer, as ``teacher.named_modules()`` prints it.
        guided: module path of the student's guided layer.
        example_input: one batch of inputs (e.g. ``torch.zeros(1, 1, 28, 28)``): a dry run on it finds the
            shapes of both layers, from which the regressor is built.
        regressor_activation: ``"auto"`` (the hint layer's own non-linearity, §2.2), ``"none"``, or a name
            such as ``"relu"`` or ``"maxout2"``.
        regressor_batch_norm: a batch norm inside the regressor (the common one-stage variant's conv-BN-ReLU).
        logits_key: where the student's logits are in its output (``fitnets.core.outputs``).
        hint_extra_tokens, guided_extra_tokens: for a layer that outputs tokens ``(N, C)``, the number of
            leading non-patch tokens (class, distillation, registers); ``None`` finds it from the patch grid
            the model makes, else from the input's size (``fitnets.core.features``). A count that the model's
            grid contradicts is refused.

    Attributes:
        regressor: the regressor (``nn.Module``); it is not part of ``student``.
        hint_shape, guided_shape: the features as the regressor sees them, without the batch dimension: a map
            ``(C, H, W)`` (token outputs reshaped to their patch grid) or a flat ``(C,)``.
        hint_layout, guided_layout: the ``TokenLayout`` of a token output, else ``None``.

    Raises:
        FitNetsError: an unknown layer path, an ambiguous tuple output, or shapes no regressor can join.

    Example:
        >>> fitnet = FitNet(teacher, student, hint="conv2", guided="conv4",
        ...                 example_input=torch.zeros(1, 1, 28, 28))
        >>> loss = fitnet.hint_loss(images)   # a scalar; backward reaches the student and the regressor
    """

    def __init__(self, teacher: nn.Module | FrozenTeacher, student: nn.Module, hint: str, guided: str,
                 example_input: torch.Tensor, regressor_activation: str | nn.Module | None = "auto",
                 regressor_batch_norm: bool = False, logits_key: str | int | None = None,
                 hint_extra_tokens: int | None = None, guided_extra_tokens: int | None = None):
        self.logits_key = logits_key  # where the student's logits are in its output (fitnets.core.outputs)
        if not isinstance(student, nn.Module) or not any(p.requires_grad for p in student.parameters()):
            raise FitNetsError(f"the student ({type(student).__name__}) has no trainable parameters: there is "
                               "nothing for the hint to train")
        self.teacher = teacher if isinstance(teacher, FrozenTeacher) else FrozenTeacher(teacher)
        self.student = student
        self.hint, self.guided = str(LayerRef.parse(hint)), str(LayerRef.parse(guided))
        if not isinstance(example_input, torch.Tensor):
            raise FitNetsError("example_input must be a tensor batch, e.g. torch.zeros(1, 1, 28, 28)")
        device = next(iter(student.parameters()), torch.empty(0)).device
        example_input = example_input.to(device)
        self._input_dims = example_input.dim()
        with (dry_run(self.teacher.module, example_input), batch_checked(self.teacher.module),
              recorded_maps(self.teacher.module) as hint_maps):
            (hint_out,) = self.teacher.features(example_input, [self.hint])
        with (torch.no_grad(), eval_mode(student), dry_run(student, example_input), batch_checked(student),
              recorded_maps(student) as guided_maps):
            (guided_out,) = tap(student, example_input, [self.guided])
        image_hw = (example_input.shape[-2], example_input.shape[-1])
        self.hint_layout = _layout(hint_out, hint_maps, image_hw, hint_extra_tokens, "hint_extra_tokens")
        self.guided_layout = _layout(guided_out, guided_maps, image_hw, guided_extra_tokens, "guided_extra_tokens")
        self.hint_shape = tuple(self._as_map(hint_out, self.hint_layout).shape[1:])
        self.guided_shape = tuple(self._as_map(guided_out, self.guided_layout).shape[1:])
        if regressor_activation == "auto":  # §2.2: u_h and r end in the same non-linearity
            regressor_activation = hint_activation(self.teacher.module, LayerRef.parse(self.hint).module)
            if regressor_activation is None:
                log.info("hint layer %s ends in no known non-linearity: the regressor is linear", self.hint)
        self.regressor = build_regressor(self.guided_shape, self.hint_shape, regressor_activation,
                                         regressor_batch_norm).to(device)
        self._stage1_names = self._find_stage1_parameters(example_input)

    def _find_stage1_parameters(self, example_input: torch.Tensor) -> list[str]:
        """Names of the student parameters that the guided layer's output depends on: those are "layers 1..g"
        of Algorithm 1, found by autograd on the cut forward, for any architecture."""
        named = [(n, p) for n, p in self.student.named_parameters() if p.requires_grad]
        with eval_mode(self.student):
            (out,) = tap(self.student, example_input, [self.guided])
        if not out.requires_grad:   # the layers up to the guided one learn nothing: no stage 1 to train
            raise FitNetsError(f"the student's guided layer {self.guided} depends on no trainable parameter: "
                               "choose a guided layer after a layer that learns")
        grads = torch.autograd.grad(out.float().sum(), [p for _, p in named], allow_unused=True)
        return [n for (n, _), g in zip(named, grads) if g is not None]

    def guided_features(self, x: torch.Tensor, cut: bool = True) -> torch.Tensor:
        """The student's guided-layer output; with ``cut`` the student's forward stops right after that layer
        (§2.2: stage 1 needs the student only up to it)."""
        (out,) = tap(self.student, x, [self.guided], stop=cut)
        return self._as_map(out, self.guided_layout)

    def hint_features(self, x: torch.Tensor, cut: bool = True) -> torch.Tensor:
        """The teacher's hint-layer output (no graph); with ``cut`` the teacher's forward stops after that layer."""
        (out,) = self.teacher.features(x, [self.hint], stop=cut)
        return self._as_map(out, self.hint_layout)

    @staticmethod
    def _as_map(out: torch.Tensor, layout: TokenLayout | None) -> torch.Tensor:
        return layout.to_map(out) if layout is not None else out

    def hint_loss(self, x: torch.Tensor, hint: torch.Tensor | None = None, cut: bool = True,
                  train_student: bool = True) -> torch.Tensor:
        """Stage-1 loss of a batch: ``½ ‖u_h(x) − r(v_g(x))‖²`` per example, averaged (a scalar tensor).

        Args:
            x: input batch.
            hint: the teacher's hint features for ``x`` when the caller has them (the trainer takes them from
                its teacher-output source, live or cached); ``None`` runs the teacher here.
            cut: stop both forwards after their layer (``False`` only to measure what the cut saves).
            train_student: ``False``: the guided features are constants, the gradient reaches the regressor
                only (the regressor-first reading of stage 1; not the paper's Algorithm 1, which trains both).
        """
        self._check_batch(x)
        hint = self.hint_features(x, cut) if hint is None else hint
        with torch.set_grad_enabled(train_student and torch.is_grad_enabled()):
            guided = self.guided_features(x, cut)
        return hint_loss(hint, self.regressor(guided))

    def _check_batch(self, x) -> None:
        if not isinstance(x, torch.Tensor):
            raise FitNetsError(f"the input must be a torch.Tensor batch, got a {type(x).__name__}")
        if x.dim() != self._input_dims:
            raise FitNetsError(f"the input has shape {tuple(x.shape)}, but example_input had {self._input_dims} "
                               "dimensions: give a batch (add one with x.unsqueeze(0))")

    def onestage_losses(self, x: torch.Tensor, y: torch.Tensor, hint: torch.Tensor, beta: float
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The common one-stage variant used by later toolkits (not the paper's method): cross-entropy plus
        ``beta`` × the mean squared error between the regressed guided features and the teacher's ``hint``
        features for ``x``, in one forward of the whole student, no KD term. Returns the losses and the
        student's logits."""
        output, (guided,) = forward_with_taps(self.student, x, [self.guided])
        guided = self._as_map(guided, self.guided_layout)
        logits = logits_of(output, self.logits_key)
        task = F.cross_entropy(logits, y)
        mse = F.mse_loss(self.regressor(guided), hint.to(guided.dtype))
        return {"loss": task + beta * mse, "task_loss": task, "hint_mse": mse}, logits

    def stage1_parameter_names(self) -> list[str]:
        """Student parameters trained in stage 1 (those up to and including the guided layer)."""
        return list(self._stage1_names)

    def stage1_parameters(self) -> list[nn.Parameter]:
        """What stage 1's optimizer gets: the student's parameters up to the guided layer, then the regressor's."""
        params = dict(self.student.named_parameters())
        return [params[n] for n in self._stage1_names] + list(self.regressor.parameters())

    def describe(self) -> str:
        hint = f"; {self.hint_layout.describe()}" if self.hint_layout else ""
        guided = f"; {self.guided_layout.describe()}" if self.guided_layout else ""
        return (f"hint    {self.hint} {self.hint_shape} (teacher{hint})\n"
                f"guided  {self.guided} {self.guided_shape} (student{guided})\n"
                f"regressor {describe_regressor(self.regressor)}")
