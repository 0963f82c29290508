"""A small model registry: ``create_model(name, **kw)``, ``list_models()``, ``model_spec(name)``.

A model name is a registered one (the built-in families, and those of installed packages that declare a
``fitnets.models`` entry point), ``torchvision:NAME`` / ``timm:NAME``, or ``package.module:factory``. That last
form, wherever a model is named (a flag, a config's ``student`` or ``teacher``, a run folder's config), is the one
boundary where a string the user wrote becomes an import (``_import_spec``), as uvicorn and gunicorn name an app;
elsewhere the library imports only fixed names (torchvision, timm) and the entry points packages declare."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from torch import nn

from fitnets import imports
from fitnets.errors import FitNetsError, closest
from fitnets.imports import cause, import_callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of a model besides its constructor.

    Attributes:
        name: registry name.
        factory: builds the ``nn.Module`` from keyword arguments.
        input_shape: one example's shape ``(C, H, W)``, for the dry run that finds layer shapes.
        hint: the module path of the paper's hint layer (teachers), if any.
        guided: the module path of the paper's guided layer (students), if any.
        pretrained: file name, inside the package's ``weights/`` folder, of shipped weights.
        description: one line for ``fitnets models``.
        paper_kwargs: for the paper's networks, the constructor arguments that give them exactly as the paper
            counts them (every maxout layer with 2 pieces); ``None`` for other models.
    """

    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    hint: str | None = None
    guided: str | None = None
    pretrained: str | None = None
    description: str = ""
    paper_kwargs: dict | None = None


_REGISTRY: dict[str, ModelSpec] = {}
_PLUGINS_LOADED = False
_BROKEN_PLUGINS: dict[str, str] = {}  # entry-point name -> why it failed to load


def _load_plugins() -> None:
    """Import the packages that declare models under the ``fitnets.models`` entry-point group (once): that is
    how an installed package's architectures become registered names, declared in its metadata rather than typed
    as ``package.module:factory`` (the import-by-string boundary, ``_import_spec``).

    A plugin that fails to import does not take the built-in models (or the other plugins) down with it: it is
    skipped with a warning naming it and its error, and an unknown model name later says which plugins were
    skipped and why, so a model missing because of a broken plugin is never a silent mystery."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    for entry in entry_points(group="fitnets.models"):
        try:
            entry.load()
        except Exception as err:
            _BROKEN_PLUGINS[entry.name] = f"{entry.value}: {cause(err)}"
            log.warning("skipped the fitnets.models plugin %r (%s)", entry.name, _BROKEN_PLUGINS[entry.name])


def register_model(name: str, factory: Callable[..., nn.Module], **spec) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelSpec(name, factory, **spec)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _load_plugins()
    return sorted(_REGISTRY)


def _external_spec(name: str) -> ModelSpec:
    """``torchvision:NAME`` or ``timm:NAME``: a model of that library, when it is installed (ImageNet-sized
    input by default; pass ``num_classes`` as usual)."""
    library, _, model_name = name.partition(":")
    module = imports.import_module(library, repr(name))
    if library == "torchvision":
        from torchvision import models as tv_models  # pyright: ignore[reportMissingImports] (an optional extra)

        factory = functools.partial(tv_models.get_model, model_name)
    else:
        factory = functools.partial(module.create_model, model_name)
    return ModelSpec(name, factory, (3, 224, 224), description=f"{model_name} from {library}")


EXTERNAL_LIBRARIES = ("torchvision", "timm")


def is_model_factory(spec: str) -> bool:
    """Whether ``spec`` starts ``package.module:factory`` — a callable to import that returns the model (the
    convention of uvicorn and gunicorn) — rather than a registered ``NAME`` (possibly ``NAME:PATH``)."""
    module = spec.partition(":")[0]
    if not imports.spelled_as_import(spec) or module in EXTERNAL_LIBRARIES:
        return False
    _load_plugins()
    return module not in _REGISTRY  # `NAME:dir` with a registered NAME stays a weights path


def _import_spec(name: str) -> ModelSpec:
    """``package.module:factory``: the user's own callable, imported; it must return an ``nn.Module``. The
    input shape comes from the run's data or ``input_shape`` (the spec's is empty)."""
    module_name, _, attr = name.partition(":")
    factory = import_callable(name, "the model")

    @functools.wraps(factory)
    def build(**kwargs) -> nn.Module:
        try:
            model = factory(**kwargs)
        except Exception as err:
            raise FitNetsError(f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) raised "
                               f"{cause(err)}") from None
        if not isinstance(model, nn.Module):
            raise FitNetsError(f"{name} returned a {type(model).__name__}, not an nn.Module")
        return model

    return ModelSpec(name, build, (), description=f"{attr} from {module_name}")


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name`` (or of ``torchvision:NAME``, ``timm:NAME``, ``package.module:factory``); a
    clear error naming the closest names when it is unknown."""
    if imports.is_object_name(name):
        raise FitNetsError(f"the model {name} was given to fitnets.distill/train as a Python object and has no name "
                           "to build it by: build it in Python, load its weights with fitnets.load_weights(model, "
                           "RUN_DIR/student.safetensors), then fitnets.export(model, DIR, run=RUN_DIR) or "
                           "fitnets.evaluate(model, test_set, run=RUN_DIR)")
    if name.startswith(tuple(f"{lib}:" for lib in EXTERNAL_LIBRARIES)):
        return _external_spec(name)
    if is_model_factory(name):
        return _import_spec(name)
    if name not in _REGISTRY:
        _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        broken = "".join(f" The plugin {k!r} failed to load ({v}), so its models are missing."
                         for k, v in _BROKEN_PLUGINS.items())
        raise FitNetsError(f"unknown model {name!r}.{closest(name, _REGISTRY)} "
                           f"Known models: {', '.join(list_models())}.{broken}") from None


def pretrained_path(name: str):
    spec = model_spec(name)
    if spec.pretrained is None:
        raise FitNetsError(f"model {name!r} ships no pretrained weights; give a weights file as NAME:PATH")
    return resources.files("fitnets") / "weights" / spec.pretrained


def create_model(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from ``list_models()``, e.g. ``"paper-mnist-fitnet"``.
        pretrained: load the weights shipped with the package (only models that have them).
        **kwargs: passed to the model's constructor (e.g. ``num_classes=100``).

    Returns:
        The model, in training mode.

    Raises:
        FitNetsError: unknown name, or ``pretrained=True`` for a model without shipped weights.

    Example:
        >>> student = create_model("paper-mnist-fitnet")
    """
    spec = model_spec(name)
    try:
        model = spec.factory(**kwargs)
    except TypeError as err:
        raise FitNetsError(f"cannot build {name!r} with {kwargs}: {err}") from None
    if pretrained:
        from fitnets.checkpoint import load_weights

        load_weights(model, str(pretrained_path(name)))
    return model
