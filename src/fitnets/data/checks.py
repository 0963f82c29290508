"""Your data checked at the door: labels, the number of classes and the first items, before anything trains.

A mistake in the data should cost a line, not a stage of training: a label out of range used to surface as an
``IndexError`` in the first KD step (after stage 1 had trained), a test label out of range after both stages.
The checks are cheap — never a pass over a large Dataset's items at start-up:

- labels a Dataset exposes (a ``targets`` / ``labels`` attribute, as torchvision's and many users' datasets have;
  a Hugging Face ``datasets.Dataset``'s label column) are checked in full, as one tensor, when its first items
  give the same labels;
- the first ``HEAD_ITEMS`` items of every split are read as training reads them (the input finite, the label a
  class index in range);
- every item read later is checked the same way (``DatasetSplit``), so a bad item met mid-run names its index
  and split instead of failing in the loss.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fitnets.errors import FitNetsError
from fitnets.imports import cause

HEAD_ITEMS = 16  # items of each split read and checked before stage 1: enough to meet a systematic mistake
AGREE_ITEMS = 4  # items whose labels must equal an exposed ``targets`` / ``labels`` for it to be used

log = logging.getLogger(__name__)


def read_item(dataset, index: int, where: str):
    """``dataset[index]``, with an exception the Dataset raises turned into one line naming the item
    (``where``: "item 17 of the training set") and the Dataset's own error."""
    try:
        return dataset[index]
    except FitNetsError:
        raise
    except Exception as err:  # the user's code may raise anything; all of it means this item cannot be read
        raise FitNetsError(f"{where} raised {cause(err)}") from None


def class_index(value: Any, where: str) -> int:
    """A label as a class index: an int, or an integral number or one-element tensor / array. One-hot or soft
    targets and fractional labels are refused (``int()`` would truncate 0.7 to class 0 without a word)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        size = value.numel() if isinstance(value, torch.Tensor) else value.size
        if size != 1:
            raise FitNetsError(f"{where} is a {type(value).__name__} of {size} values, not a class index: fitnets "
                               "trains on class indices 0…C−1 (for one-hot labels give label.argmax())")
        value = value.item()
    if isinstance(value, (float, np.floating)) and not float(value).is_integer():
        raise FitNetsError(f"{where} is {float(value):.6g}, not a class index: labels are integers 0…C−1")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise FitNetsError(f"{where} is {value!r}, not a class index") from None


def check_label(label: int, num_classes: int, where: str, advice: str, top: int | None = None) -> int:
    """``label`` when it is a class index below ``num_classes``; else one line saying how to fix it
    (``advice`` names where the number of classes came from, e.g. "give num_classes="; ``top``: the largest
    label, when all are known)."""
    if 0 <= label < num_classes:
        return label
    if label < 0:
        raise FitNetsError(f"{where} is {label}: labels are class indices 0…C−1, never negative (leave such "
                           "examples out of the Dataset)")
    need = (f"{top + 1} (the labels reach {top})" if top is not None and top >= label else f"{label + 1} or more")
    raise FitNetsError(f"{where} is {label}, beyond the {num_classes} classes (0…{num_classes - 1}); "
                       f"{advice}{need} if the data has that many classes")


def check_labels(labels: torch.Tensor, num_classes: int | None, where: str, advice: str = "",
                 indices: torch.Tensor | None = None) -> None:
    """All of ``labels`` (one tensor, e.g. a Dataset's ``targets``) at once — those at ``indices`` when given —
    the first bad one named by its item's index in ``where`` ("the test set"). ``num_classes`` ``None``: only
    that they are class indices."""
    if labels.dim() != 1:
        raise FitNetsError(f"the labels of {where} have shape {tuple(labels.shape)}, not one class index per "
                           "example (for one-hot labels give labels.argmax(1))")
    position = indices if indices is not None else torch.arange(len(labels))
    labels = labels[position]
    bad = labels < 0
    if labels.is_floating_point():
        bad |= labels != labels.round()
    if num_classes is not None:
        bad |= labels >= num_classes
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        at = f"the label of item {int(position[i])} of {where}"
        top = int(labels.max()) if not labels.is_floating_point() else None
        check_label(class_index(labels[i].item(), at), num_classes or 0, at, advice, top)


def exposed_labels(dataset, item_label: Callable[[int], Any], key: str = "labels") -> torch.Tensor | None:
    """The labels a Dataset exposes as an attribute (``targets`` or ``labels``) or, for a Hugging Face
    ``datasets.Dataset``, as its column ``key`` (read without decoding an image), as one tensor; ``None`` when
    it has none that reads as one label per item — or one its items do not give: the first
    ``AGREE_ITEMS`` labels are read from the items (``item_label(i)``) and compared, since a transform of the
    label (torchvision's ``target_transform``) changes what the items give but not the attribute."""
    for attr in ("targets", "labels", key):
        labels = getattr(dataset, attr, None) if attr != key else _column(dataset, key)
        if labels is None or isinstance(labels, (str, dict)):
            continue
        try:
            labels = torch.as_tensor(np.asarray(labels))
        except (TypeError, ValueError, RuntimeError):
            return None
        if labels.dim() >= 1 and len(labels) == len(dataset):
            if not all(_same(item_label(i), labels[i]) for i in range(min(AGREE_ITEMS, len(labels)))):
                log.info("the Dataset's %r attribute differs from the labels its items give: not used", attr)
                return None
            return labels
    return None


def _column(dataset, key: str) -> Any:
    """The column ``key`` of a Hugging Face ``datasets.Dataset`` (it lists ``column_names``), else ``None``."""
    if key not in (getattr(dataset, "column_names", None) or ()):
        return None
    try:
        return list(dataset[key])   # a list, or (datasets ≥ 3) a lazy Column
    except Exception:  # a transform set on the dataset may refuse a lone column: then no cheap labels
        return None


def _same(value: Any, label: torch.Tensor) -> bool:
    """Whether an item's label ``value`` is the attribute's ``label``."""
    try:
        given = torch.as_tensor(np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value))
        return given.shape == label.shape and bool((given.double() == label.double()).all())
    except (TypeError, ValueError, RuntimeError):
        return False


def check_classes(num_classes: Any, where: str) -> int:
    """``num_classes`` as given (``where``: "num_classes", "mydata:splits's 'num_classes'"), if it is an int
    of at least 2."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise FitNetsError(f"{where} is {num_classes!r}: give the number of classes as an int ≥ 2 (or leave it "
                           "out to count it from the training labels)")
    return int(num_classes)


def check_input(x: torch.Tensor, where: str) -> torch.Tensor:
    """``x`` (a float input as the model gets it) when all its values are finite."""
    if not bool(torch.isfinite(x).all()):
        raise FitNetsError(f"{where} holds NaN or infinite values (after data.mean / data.std): fix the item "
                           "or its transform")
    return x


def finite_values(values: list[float] | None) -> bool:
    """Whether a config's list of numbers (``data.mean``, ``data.std``) holds only finite ones."""
    return values is None or all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
