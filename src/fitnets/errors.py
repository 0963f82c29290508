"""The one exception type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FitNetsError(Exception):
    """A user mistake or a bad input (a path, a file, a config value) with a message that says how to fix it."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """A ``" Did you mean: a, b?"`` suffix naming the closest valid choices, or ``""`` when none is close."""
    choices = list(choices)
    matches = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not matches:  # a typo in a long dotted path can fall below the ratio cut-off; try the last component
        tail = name.rsplit(".", 1)[-1]
        matches = [c for c in choices if c.rsplit(".", 1)[-1] == tail][:n]
    return f" Did you mean: {', '.join(matches)}?" if matches else ""
