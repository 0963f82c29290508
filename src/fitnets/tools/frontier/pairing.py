"""Each candidate's guided layer for the family's one hint (FitNets §2.2: the hint is the teacher's middle
layer, the guided layer the student's): from ``--guided``, from the registry, else the best of ``fitnets
suggest``'s ranking among the pairs that use the family's hint. Every candidate shares the same teacher hint —
its regressor, built per student, joins whatever guided shape it has (§2.2's convolutional regressor)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fitnets.core.regressor import build_regressor
from fitnets.core.taps import dry_run, tap
from fitnets.errors import FitNetsError
from fitnets.models.registry import model_spec
from fitnets.tools import suggest


@dataclass
class Pairing:
    guided: str | None   # the student's guided layer, or None when no regressor joins it to the hint
    source: str          # "--guided", "registry", "suggest", or why there is none


def _joins(teacher: nn.Module, hint: str, student: nn.Module, guided: str, x: torch.Tensor) -> str | None:
    """Why ``guided`` cannot be joined to ``hint`` by a regressor, or ``None`` when it can."""
    with torch.no_grad(), dry_run(teacher, x), dry_run(student, x):
        try:
            h = tap(teacher.eval(), x, [hint])[0]
            g = tap(student.eval(), x, [guided])[0]
            build_regressor(tuple(g.shape[1:]), tuple(h.shape[1:]), None)
        except FitNetsError as err:
            return str(err)
    return None


def choose_guided(teacher: nn.Module, hint: str, student: nn.Module, name: str, x: torch.Tensor,
                  flag: str | None = None) -> Pairing:
    """The guided layer of ``student`` (registered as ``name``) for the teacher's ``hint``, on the input ``x``
    ``(2, C, H, W)``: ``flag`` when given, else the registry's, else ``suggest``'s best pair with this hint."""
    registered = None
    try:
        registered = model_spec(name).guided
    except FitNetsError:
        pass
    for layer, source in ((flag, "--guided"), (registered, "registry")):
        if layer:
            why = _joins(teacher, hint, student, layer, x)
            if why is None:
                return Pairing(layer, source)
            if source == "--guided":
                return Pairing(None, f"--guided {layer} does not join the hint: {why}")
    with torch.no_grad(), dry_run(teacher, x), dry_run(student, x):
        teacher_layers = [t for t in suggest.layers(teacher, x) if t.path == hint]
        if not teacher_layers:  # a hint suggest would not offer (a whole-trunk block): taken as given, a map
            out = tap(teacher.eval(), x, [hint])[0]
            if out.dim() == 4:
                teacher_layers = [suggest.Layer(hint, tuple(out.shape[1:]), 0.5)]
        student_layers = suggest.layers(student, x)
    ranked = suggest.rank(teacher_layers, student_layers)
    if not ranked:
        return Pairing(None, f"no layer of this student can be joined to the hint {hint} by a regressor")
    return Pairing(ranked[0].guided.path, "suggest")
