"""The one boundary where a string becomes an import: ``package.module:factory`` names a callable to import, as
uvicorn and gunicorn name an app. The command line uses it for your models (``--student mymodels:resnet``) and
your data (``--data mydata:splits``); nothing else in the library imports code by string."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from fitnets.errors import FitNetsError

OBJECT_PREFIX = "python:"  # a model or Dataset given as an object: python:module.Class (``object_name``)


def cause(err: BaseException) -> str:
    """An exception as one line of a message: its type and the first line of its text."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def import_module(name: str, what: str):
    """The module ``name`` (``what`` says what it is for, in errors).

    Raises:
        FitNetsError: it cannot be imported (one line, with the reason: not installed, or failing at import).
    """
    try:
        return importlib.import_module(name)
    except Exception as err:  # torchvision can fail to import beside a mismatched torch build, not only be absent
        raise FitNetsError(f"{what} needs {name}, which cannot be imported here ({cause(err)}); pip install "
                           f"{name}") from None


def object_name(obj: object) -> str:
    """How a run's config names a model or a Dataset given as a Python object (``fitnets.distill``), which has no
    name to build it by: ``python:module.Class``."""
    return f"{OBJECT_PREFIX}{type(obj).__module__}.{type(obj).__qualname__}"


def is_object_name(spec: str) -> bool:
    """Whether ``spec`` names a Python object given to ``fitnets.distill`` (``object_name``)."""
    return spec.startswith(OBJECT_PREFIX)


def import_callable(spec: str, what: str) -> Callable:
    """The callable ``spec`` = ``package.module:factory`` names (``what`` says what it is for, in errors).

    Raises:
        FitNetsError: the module cannot be imported, or has no such callable (one line each).
    """
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise FitNetsError(f"cannot import {module_name!r} for {what} {spec!r} ({cause(err)}); "
                           "is its package installed or on PYTHONPATH?") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise FitNetsError(f"module {module_name!r} has no callable {attr!r} (for {what} {spec!r})")
    return factory


def spelled_as_import(spec: str) -> bool:
    """Whether ``spec`` is spelled ``package.module:factory`` (a trailing ``:PATH`` allowed) — by its spelling
    alone: ``NAME:PATH`` with a registered NAME is spelled the same (``models.registry.is_model_factory`` tells
    them apart)."""
    module, sep, rest = spec.partition(":")
    attr = rest.partition(":")[0]
    return bool(sep) and attr.isidentifier() and all(part.isidentifier() for part in module.split("."))
