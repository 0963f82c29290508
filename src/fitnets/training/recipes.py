"""The methods, each a recipe that says on one screen what its stages train, on which loss, and how each
stage's weights are selected — FitNets as in Algorithm 1 of the paper. A recipe only describes its stages
(``fitnets.training.engine.Stage``); the engine trains them.

The method table (``fitnets.training.methods.METHODS``: a method's name, one-line description and what it needs
built) is a leaf that the config reads; this module fills in each method's recipe (``RECIPES``, at the end).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from torch import nn

from fitnets.core.fitnet import FitNet
from fitnets.core.inputs import InputFormat
from fitnets.core.losses import kd_weight_at
from fitnets.core.teacher import FrozenTeacher, TeacherOutputs
from fitnets.training.config import HintStageConfig, RunConfig
from fitnets.training.engine import Stage
from fitnets.training.evaluate import AccuracyEval, HintEval, HintFit
from fitnets.training.loading import Data
from fitnets.training.methods import METHODS, Method
from fitnets.training.steps import CEStep, HintStep, KDStep, OneStageStep

log = logging.getLogger(__name__)

__all__ = ["METHODS", "Method", "Parts", "RECIPES", "hint_stage"]


@dataclass
class Parts:
    """What the recipes compose, built once per run from its config (by ``Run``).

    Attributes:
        student_forward: the student's forward as the CE/KD steps call it (``torch.compile(student)`` under
            ``--compile``), or ``None`` for the student's own call.
        teacher_logits, teacher_hints: the run's sources of the teacher's logits and hint features, as
            ``fitnets.training.teacher_outputs.teacher_source`` chose them (live, cached, or the store), or
            ``None`` when the method does not read them.
    """

    config: RunConfig
    data: Data
    student: nn.Module
    inputs: InputFormat
    teacher_logits: TeacherOutputs | None = None
    teacher_hints: TeacherOutputs | None = None
    student_forward: Callable | None = None
    teacher: FrozenTeacher | None = None
    fitnet: FitNet | None = None

    def count(self, params) -> int:
        return sum(p.numel() for p in params)

    def accuracy(self) -> AccuracyEval | None:
        return self.on_validation(AccuracyEval(self.student, self.data.val, self.config.data.eval_batch_size,
                                               self.inputs, self.config.logits_key))

    def on_validation(self, rule):
        """``rule`` as a stage's validation, or ``None`` when the run holds out no validation data."""
        return rule if len(self.data.val) else None

    def logits(self) -> TeacherOutputs:
        """The teacher's logits, which ``Run`` builds for every method whose table entry reads them."""
        return _built(self.teacher_logits, "the teacher's logits")

    def hints(self) -> TeacherOutputs:
        return _built(self.teacher_hints, "the teacher's hints")

    def hint_net(self) -> FitNet:
        return _built(self.fitnet, "a FitNet")


_T = TypeVar("_T")


def _built(part: _T | None, what: str) -> _T:
    if part is None:  # a method's table entry and Run's build disagree: a bug, not a user's mistake
        raise RuntimeError(f"this method needs {what}, which the run did not build")
    return part


def kd_schedule(c: RunConfig) -> str:
    """λ's schedule as the plan states it: "λ 4.0→1.0 over 10 epochs", or the one value of a one-epoch decay."""
    kd, epochs = c.kd, c.kd.decay_epochs or c.epochs
    if epochs <= 1 and kd.weight_start != kd.weight_end:
        return (f"λ {kd_weight_at(0, kd.weight_start, kd.weight_end, 1):g}: the mean of {kd.weight_start:g}→"
                f"{kd.weight_end:g}, as one epoch cannot decay")
    return f"λ {kd.weight_start:g}→{kd.weight_end:g} over {epochs} epochs"


def _kd_stage(p: Parts, groups: list[dict]) -> Stage:
    """Hinton's KD on the whole student (§2.1): cross-entropy + λ·H(P_T^τ, P_S^τ), λ decaying linearly."""
    c = p.config
    logits = p.logits()
    step = KDStep(p.student, logits, c.kd, c.epochs, p.student_forward, c.logits_key)
    return Stage("main", step, groups, {"model": p.student},
                 p.accuracy(), c.epochs, c.optim, c.patience, c.keep, teachers=(logits,),
                 about=f"{c.epochs} epochs, KD loss (τ={c.kd.temperature}, {kd_schedule(c)}"
                       f"{', ×τ²' if c.kd.tau_squared else ''}), all {p.count(p.student.parameters()):,} student "
                       "parameters")


def backprop(p: Parts) -> list[Stage]:
    """Standard backprop: the student alone, cross-entropy on the labels."""
    c = p.config
    step = CEStep(p.student, p.student_forward, c.logits_key)
    return [Stage("main", step, [{"params": list(p.student.parameters())}],
                  {"model": p.student}, p.accuracy(), c.epochs, c.optim, c.patience, c.keep,
                  about=f"{c.epochs} epochs, cross-entropy, all {p.count(p.student.parameters()):,} parameters")]


def knowledge_distillation(p: Parts) -> list[Stage]:
    """KD alone: one stage of the KD loss on the whole student."""
    return [_kd_stage(p, [{"params": list(p.student.parameters())}])]


def hint_stage(fitnet: FitNet, hints: TeacherOutputs, settings: HintStageConfig, validate: HintEval | None = None,
               cut: bool = True, summary: HintFit | None = None) -> Stage:
    """FitNets' stage 1 (§2.2; what it trains and on which loss: ``fitnets`` below) as a stage. The recipe,
    ``fitnets bench step`` and ``fitnets suggest --probe`` all build stage 1 here.

    Args:
        fitnet: teacher, student, hint and guided layers, regressor.
        hints: the source of the teacher's hints, ``fitnet.hint_features`` live or cached.
        settings: the stage's epochs, optimizer and patience (``RunConfig.hint_stage``).
        validate: the validation rule (``HintEval``), or ``None`` when there is no validation data.
        cut: stop both forwards after their layer (off only to measure what the cut saves).
        summary: what the stage reports once trained (the run's: ``HintFit``, the fit it reached).
    """
    params = fitnet.stage1_parameters()
    trained = fitnet.stage1_parameter_names()
    first = settings.regressor_first
    variant = (f"; {'the first epoch trains' if first == 1 else f'the first {first} epochs train'} the regressor "
               "alone against the frozen student (regressor-first, not the paper's joint stage)" if first else "")
    if settings.diagnostics and validate is not None:
        variant += (f"; per epoch: linear probe and CKA on {min(settings.diagnostics, len(validate.data)):,} "
                    "validation examples")
    return Stage("hint", step=HintStep(fitnet, hints, cut, first), optimize=[{"params": params}],
                 saves={"model": fitnet.student, "regressor": fitnet.regressor}, validate=validate, keep="best",
                 epochs=settings.epochs, optim=settings.optim, patience=settings.patience, teachers=(hints,),
                 summary=summary,
                 about=f"{settings.epochs} epochs, hint loss; trains {sum(p.numel() for p in params):,} parameters: "
                       f"the student's {len(trained)} tensors up to {fitnet.guided} ({', '.join(trained[:4])}"
                       f"{', ...' if len(trained) > 4 else ''}) and the regressor; the teacher runs up to "
                       f"{fitnet.hint} only, the student up to {fitnet.guided} only{variant}")


def fitnets(p: Parts) -> list[Stage]:
    """FitNets, Algorithm 1 of the paper: hints, then KD."""
    c, fitnet = p.config, p.hint_net()
    # Stage 1 (§2.2): the student's layers up to the guided one (found by autograd: "layers 1..g") and the
    # regressor learn the teacher's hint, ½‖u_h(x) − r(v_g(x))‖². No labels; the teacher is frozen; both
    # forwards stop at their layer. The stage ends with the weights of the lowest validation hint loss.
    validate = p.on_validation(HintEval(fitnet, p.data.val, c.data.eval_batch_size, p.inputs,
                                        c.hint_stage.diagnostics))
    if validate is None and c.hint_stage.diagnostics:
        log.warning("hint_stage.diagnostics (--hint-diagnostics %d) measures on validation examples, and this run "
                    "holds out none (data.val_size 0): no probe or CKA is logged", c.hint_stage.diagnostics)
    hint = hint_stage(fitnet, p.hints(), c.hint_stage, validate,
                      summary=HintFit(validate, c.teacher or "", c.student) if validate is not None else None)
    trained = fitnet.stage1_parameter_names()
    # Stage 2 (§2.1): from stage 1's weights, *all* the student's weights learn with KD, a fresh optimizer and
    # nothing frozen; the regressor is dropped. The authors' code may scale the pre-trained layers' lr.
    pre = set(trained)
    named = list(p.student.named_parameters())
    groups = [{"params": [w for n, w in named if n in pre], "lr_scale": c.hint_stage.pretrained_lr_scale},
              {"params": [w for n, w in named if n not in pre]}]
    kd = _kd_stage(p, groups if c.hint_stage.pretrained_lr_scale != 1.0 else [{"params": [w for _, w in named]}])
    kd.about += ", fresh optimizer, regressor dropped"
    return [hint, kd]


def fitnet_onestage(p: Parts, with_kd: bool = False) -> list[Stage]:
    """The one-stage "FitNet" of later toolkits (not the paper's method): cross-entropy + β × MSE between the
    regressed guided features and the hint, the whole student and the regressor together, no KD term — or,
    ``with_kd``, plus the KD term of §2.1 (λ decaying as in the paper's stage 2): "FitNet + KD" in one stage."""
    c, fitnet = p.config, p.hint_net()
    hints, logits = p.hints(), p.logits() if with_kd else None
    params = list(p.student.parameters()) + list(fitnet.regressor.parameters())
    step = OneStageStep(fitnet, c.hint_stage.beta, hints, c.kd if with_kd else None, logits, c.epochs)
    kd = (f" + λ·KD (τ={c.kd.temperature}, {kd_schedule(c)})" if with_kd else
          ", no KD term")
    return [Stage("main", step, [{"params": params}], {"model": p.student, "regressor": fitnet.regressor},
                  p.accuracy(), c.epochs, c.optim, c.patience, c.keep,
                  teachers=(hints, logits) if logits is not None else (hints,),
                  about=f"{c.epochs} epochs, one stage (not the paper's method): cross-entropy + {c.hint_stage.beta} × "
                        f"MSE(regressor(guided), hint){kd}; all {p.count(p.student.parameters()):,} student "
                        "parameters and the regressor")]


# Each method's recipe, filled into the method table: ``METHODS[name].recipe`` is what ``Run`` builds.
RECIPES: dict[str, Callable[[Parts], list[Stage]]] = {
    "ce": backprop,
    "kd": knowledge_distillation,
    "fitnet": fitnets,
    "fitnet-onestage": fitnet_onestage,
    "fitnet-onestage-kd": functools.partial(fitnet_onestage, with_kd=True),
}
for _name, _recipe in RECIPES.items():
    METHODS[_name].recipe = _recipe
