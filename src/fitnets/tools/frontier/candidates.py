"""The students a frontier compares: model forms as the command line names them, each with keyword arguments,
and grids over those arguments.

A candidate is ``SPEC`` — ``NAME``, ``NAME:PATH``, ``RUN_DIR`` or ``package.module:factory`` (what
``fitnets.training.loading.ModelRef`` parses) — and the keyword arguments its factory is called with. On the
command line the words ``KEY=V1,V2`` after a candidate are its own arguments (a list is a grid over that
candidate), and ``--grid KEY=V1,V2`` is a grid over every candidate: ``my.models:student --grid width=8,16,32
--grid depth=2,4,6`` is 9 candidates. Values are read as YAML scalars (``8`` an int, ``0.5`` a float, ``true``
a bool, anything else a string).
"""

from __future__ import annotations

import copy
import inspect
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from torch import nn

from fitnets.errors import FitNetsError, closest
from fitnets.models.registry import create_model, model_spec
from fitnets.training.loading import ModelRef, load_model


@dataclass
class Candidate:
    """One student of the family.

    Attributes:
        spec: the model as the command line names it (``NAME``, ``NAME:PATH``, ``RUN_DIR``, ``pkg.mod:factory``).
        args: the keyword arguments the grid (or the candidate's own words) gave it.
        module: a model given as an object (``fitnets.frontier`` in Python), else ``None``.
    """

    spec: str
    args: dict[str, Any] = field(default_factory=dict)
    module: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> ModelRef:
        return ModelRef.parse(self.spec)

    @property
    def name(self) -> str:
        """The model's registry name or import path (what a run's config calls the student)."""
        return self.ref.name

    @property
    def model_args(self) -> dict[str, Any]:
        """The constructor's arguments: a run folder's own, then the candidate's."""
        return {**self.ref.model_args, **self.args}

    @property
    def label(self) -> str:
        """How the table names it: ``resnet8(in_channels=1)``."""
        short = self.spec.rpartition(":")[2] if ":" in self.spec and self.ref.weights is None else self.spec
        inside = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{short}({inside})" if inside else short

    @property
    def slug(self) -> str:
        """Its folder name inside the frontier folder: the label in file-name characters."""
        return re.sub(r"[^A-Za-z0-9_.=-]+", "-", self.label.replace(", ", "-")).strip("-")[:120]


def parse_value(text: str) -> Any:
    value = yaml.safe_load(text) if text.strip() else ""
    return value if isinstance(value, (int, float, bool, str)) else text


def parse_grid(text: str, where: str = "--grid") -> tuple[str, list[Any]]:
    """``KEY=V1,V2`` → ``("KEY", [V1, V2])``."""
    key, eq, values = text.partition("=")
    key = key.strip()
    if not eq or not key.isidentifier() or not values.strip():
        raise FitNetsError(f"bad {where} {text!r}: expected KEY=V1,V2,... (a keyword argument of the factory)")
    return key, [parse_value(v) for v in values.split(",")]


def parse_candidates(words: list[str], grids: list[str] | None = None) -> list[Candidate]:
    """The candidates the command line names: each ``SPEC`` with the ``KEY=V1,V2`` words after it, expanded
    over its own lists and over every ``--grid``, in order, without duplicates.

    Raises:
        FitNetsError: arguments before any candidate, a malformed ``KEY=VALUE``, no candidate at all.
    """
    specs: list[tuple[str, list[tuple[str, list[Any]]]]] = []
    for word in words:
        if "=" in word and ":" not in word.partition("=")[0] and "/" not in word.partition("=")[0]:
            if not specs:
                raise FitNetsError(f"{word!r} comes before any candidate: write the model first, then its KEY=VALUE "
                                   "arguments (or use --grid KEY=V1,V2 for every candidate)")
            specs[-1][1].append(parse_grid(word, "argument"))
        else:
            specs.append((word, []))
    shared = [parse_grid(g) for g in grids or []]
    out: list[Candidate] = []
    for spec, own in specs:
        axes = own + [g for g in shared if g[0] not in dict(own)]
        for values in itertools.product(*(v for _, v in axes)):
            candidate = Candidate(spec, dict(zip((k for k, _ in axes), values, strict=True)))
            if candidate not in out:
                out.append(candidate)
    if not out:
        raise FitNetsError("no candidate: name at least one student (NAME, NAME:PATH, RUN_DIR or "
                           "package.module:factory)")
    return out


def _signature(candidate: Candidate) -> inspect.Signature | None:
    if candidate.module is not None:  # built already: no factory to call
        return None
    factory = model_spec(candidate.name).factory
    target = getattr(factory, "__wrapped__", factory)
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def _expected_type(param: inspect.Parameter) -> type | None:
    annotation = param.annotation
    if isinstance(annotation, str):  # from __future__ import annotations
        annotation = {"int": int, "float": float, "bool": bool, "str": str}.get(annotation)
    if annotation in (int, float, bool, str):
        return annotation
    default = param.default
    if default is not inspect.Parameter.empty and isinstance(default, (int, float, bool, str)):
        return type(default)
    return None


def check_arguments(candidate: Candidate) -> None:
    """Refuse, before anything is built, a keyword the factory does not take or a value of the wrong type.

    Raises:
        FitNetsError: in one line, naming the candidate, the key and what the factory takes.
    """
    signature = _signature(candidate)
    if signature is None or not candidate.args:
        return
    params = signature.parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in candidate.args.items():
        if key not in params:
            if open_ended:
                continue
            takes = [k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            raise FitNetsError(f"{candidate.spec} takes no argument {key!r}.{closest(key, takes)} It takes: "
                               f"{', '.join(takes) or 'none'}")
        expected = _expected_type(params[key])
        ok = expected is None or isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok and expected is not None:
            raise FitNetsError(f"{candidate.spec}: {key}={value!r} is a {type(value).__name__}, but {key} takes a "
                               f"{expected.__name__}")


def takes(candidate: Candidate, key: str) -> bool:
    """Whether the candidate's factory takes the keyword ``key`` (a ``**kwargs`` factory takes any)."""
    signature = _signature(candidate)
    return signature is None or key in signature.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def with_classes(candidate: Candidate, num_classes: int | None) -> dict[str, Any]:
    """The candidate's constructor arguments, with ``num_classes`` (the data's) where it takes it and was not
    given one: a ``resnet8`` (100 classes by default) becomes a 10-class student on Fashion-MNIST."""
    args = candidate.model_args
    if candidate.module is not None:
        return args
    if num_classes is not None and "num_classes" not in args and takes(candidate, "num_classes"):
        args = {**args, "num_classes": num_classes}
    return args


def build(candidate: Candidate, num_classes: int | None = None) -> nn.Module:
    """The candidate's model (its weights for ``NAME:PATH`` and ``RUN_DIR``), built with its arguments.

    Raises:
        FitNetsError: the model cannot be built (an unknown name, a factory that raises), in one line.
    """
    if candidate.module is not None:  # a copy per trial: every trial starts from the weights you gave
        return copy.deepcopy(candidate.module)
    check_arguments(candidate)
    args = with_classes(candidate, num_classes)
    ref = candidate.ref
    try:
        if ref.weights is None:
            return create_model(ref.name, **args)
        return load_model(ref, **args)
    except FitNetsError as err:
        raise FitNetsError(f"candidate {candidate.label}: {err}") from None
    except Exception as err:  # the user's factory: any error is theirs, said in one line
        raise FitNetsError(f"candidate {candidate.label} cannot be built: {type(err).__name__}: {err}") from None
