"""Which students are worth having: the Pareto frontier of accuracy against speed, the pick under a budget,
and how well a cheap screen predicted the final ranking (Kendall's τ)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def pareto(points: dict[K, tuple[float, float]]) -> set[K]:
    """The keys of ``points`` (``key: (accuracy, speed)``, both higher-is-better) that no other point dominates:
    none is at least as accurate and at least as fast while better in one of the two."""
    front = set()
    for key, (acc, speed) in points.items():
        dominated = any(a >= acc and s >= speed and (a > acc or s > speed)
                        for other, (a, s) in points.items() if other != key)
        if not dominated:
            front.add(key)
    return front


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's τ-b between two paired lists (ties counted as SciPy's ``kendalltau`` counts them); ``None``
    with fewer than two pairs or when either list is constant."""
    n = len(x)
    if n != len(y):
        raise ValueError("kendall_tau needs paired lists")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else None


def pick(rows: dict[K, tuple[float, float]], min_speedup: float | None) -> K | None:
    """The most accurate key of ``rows`` (``key: (accuracy, speed-up)``) at ``speed-up ≥ min_speedup``
    (any speed-up when ``None``); ties go to the faster one."""
    inside = {k: v for k, v in rows.items() if min_speedup is None or v[1] >= min_speedup}
    if not inside:
        return None
    return max(inside, key=lambda k: (inside[k][0], inside[k][1]))
