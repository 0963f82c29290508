"""The method table: each method's name, what it needs and what it trains — the facts the config validates against
and the command line lists. A leaf (it imports nothing of fitnets): ``fitnets.training.recipes`` fills in each
method's recipe, the stages it trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Method:
    """One row of the method table.

    Attributes:
        help: one line for ``--help`` and the docs.
        logits: its steps read the teacher's logits (KD).
        hints: it needs hint and guided layers (a ``FitNet``).
        stage1: it trains FitNets' stage 1 (§2.2) as a stage of its own, so the ``hint_stage`` settings of that
            stage (``epochs``, ``regressor_first``, ``diagnostics``) apply.
        paper: its label among the paper's three trainings of one student (Table 4: standard backprop, KD,
            FitNets), which the demo compares; ``None`` when the paper does not compare it.
        recipe: the method's stages for a run's ``Parts`` (set by ``fitnets.training.recipes``).
    """

    help: str
    logits: bool = False
    hints: bool = False
    stage1: bool = False
    paper: str | None = None
    recipe: Callable[[Any], list] | None = None

    def stages(self, parts: Any) -> list:
        """The method's stages for a run's ``Parts``, by its recipe."""
        if self.recipe is None:
            raise RuntimeError("the method table's recipes are filled in by fitnets.training.recipes: import it")
        return self.recipe(parts)

    @property
    def teacher(self) -> bool:
        """It needs a trained teacher."""
        return self.logits or self.hints


METHODS: dict[str, Method] = {
    "ce": Method("standard backprop: cross-entropy on the labels, no teacher", paper="standard backprop"),
    "kd": Method("knowledge distillation (§2.1)", logits=True, paper="KD"),
    "fitnet": Method("FitNets, the paper's two stages: hints (§2.2), then KD", logits=True, hints=True, stage1=True,
                     paper="hints + KD (FitNets)"),
    "fitnet-onestage": Method("one stage, CE + β·MSE on the hint (later toolkits' FitNet)", hints=True),
    "fitnet-onestage-kd": Method("one stage, CE + β·MSE on the hint + the KD term", logits=True, hints=True),
}
