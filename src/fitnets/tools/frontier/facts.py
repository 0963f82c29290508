"""The free facts of a candidate, known before any training: parameters, multiply-accumulates, inference
latency and throughput — measured the way ``fitnets bench speed`` measures them (``fitnets.tools.speed``,
``fitnets.core.profile``) — and the budgets that decide which candidates are trained at all."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from fitnets.core.modes import eval_mode
from fitnets.core.profile import count_macs, count_parameters
from fitnets.core.timing import median_seconds
from fitnets.errors import FitNetsError


@dataclass
class Facts:
    """What a model costs at inference, on this machine."""

    params: int
    macs: int               # per example
    latency_ms: float       # one batch of ``batch_size`` examples, median
    images_per_s: float     # throughput at that batch size
    speedup: float = 1.0    # the teacher's latency over this one's
    compression: float = 1.0  # the teacher's parameters over this one's

    def relative_to(self, teacher: Facts) -> Facts:
        self.speedup = teacher.latency_ms / self.latency_ms
        self.compression = teacher.params / self.params
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def measure(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 128, repeats: int = 10,
            device: torch.device | str = "cpu") -> Facts:
    """Parameters and MACs (counted on CPU), then the median time of a forward of ``batch_size`` random
    examples in eval mode on ``device`` after 3 warm-up forwards."""
    model = model.to("cpu")
    params, macs = count_parameters(model), count_macs(model, input_shape)
    model = model.to(device)
    x = torch.randn(batch_size, *input_shape, device=device)
    with eval_mode(model):
        seconds = median_seconds(lambda: model(x), repeats, 3, device)
    model.to("cpu")
    return Facts(params, macs, 1000 * seconds, batch_size / seconds)


@dataclass
class Budget:
    """Limits a student must meet to be trained (``None``: no limit)."""

    min_speedup: float | None = None
    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None

    def __post_init__(self):
        for name, value in asdict(self).items():
            if value is not None and value <= 0:
                raise FitNetsError(f"--{name.replace('_', '-')} must be > 0, got {value}")

    def __bool__(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    def misses(self, facts: Facts) -> str | None:
        """Why ``facts`` are outside the budget (the first limit they break), or ``None``."""
        if self.min_speedup is not None and facts.speedup < self.min_speedup:
            return f"speed-up {facts.speedup:.2f}× < {self.min_speedup:g}×"
        if self.max_params is not None and facts.params > self.max_params:
            return f"{facts.params:,} parameters > {self.max_params:,}"
        if self.max_macs is not None and facts.macs > self.max_macs:
            return f"{facts.macs / 1e6:.2f}M MACs > {self.max_macs / 1e6:g}M"
        if self.max_latency_ms is not None and facts.latency_ms > self.max_latency_ms:
            return f"latency {facts.latency_ms:.2f} ms > {self.max_latency_ms:g} ms"
        return None

    def shortfall(self, facts: Facts) -> float:
        """How far outside the budget ``facts`` are, as the largest ratio by which a limit is missed (1: met)."""
        ratios = [1.0]
        if self.min_speedup is not None:
            ratios.append(self.min_speedup / facts.speedup)
        if self.max_params is not None:
            ratios.append(facts.params / self.max_params)
        if self.max_macs is not None:
            ratios.append(facts.macs / self.max_macs)
        if self.max_latency_ms is not None:
            ratios.append(facts.latency_ms / self.max_latency_ms)
        return max(ratios)

    def describe(self) -> str:
        parts = []
        if self.min_speedup is not None:
            parts.append(f"≥ {self.min_speedup:g}× the teacher's speed")
        if self.max_params is not None:
            parts.append(f"≤ {self.max_params:,} parameters")
        if self.max_macs is not None:
            parts.append(f"≤ {self.max_macs / 1e6:g}M MACs")
        if self.max_latency_ms is not None:
            parts.append(f"≤ {self.max_latency_ms:g} ms per batch")
        return ", ".join(parts) or "no budget"


def check_budget(budget: Budget, facts: dict[str, Facts], labels: dict[str, str]) -> None:
    """Refuse a budget that no candidate meets, naming the nearest one.

    Raises:
        FitNetsError: every candidate misses the budget.
    """
    if not facts or not budget or any(budget.misses(f) is None for f in facts.values()):
        return
    nearest = min(facts, key=lambda k: budget.shortfall(facts[k]))
    raise FitNetsError(f"no candidate meets the budget ({budget.describe()}); the nearest is {labels[nearest]} "
                       f"({budget.misses(facts[nearest])})")
