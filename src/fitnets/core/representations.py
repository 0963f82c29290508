"""What a layer's features hold, measured without any regressor: how linearly decodable the labels are from
them (a linear probe) and how similar they are to another layer's features (linear CKA).

They answer FitNets' best-known critique of stage 1 — does the regressor learn a meaningful map from a random
student, or do the student's layers move? — on the features themselves: the student's guided features against
the teacher's hint (``fitnets.training.evaluate.evaluate_hint`` computes both per hint epoch when asked).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

PROBE_GRID = 4        # a map is average-pooled to at most 4×4 positions before the probe
PROBE_RIDGES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # the probe's ridges tried, per example (standardised features)


def _gram(features: torch.Tensor) -> torch.Tensor:
    """The examples' Gram matrix of column-centred, flattened features (``n × n``), in float64."""
    f = features.flatten(1).float()
    f = f - f.mean(0, keepdim=True)
    return (f @ f.T).double()


def _hsic(k: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC estimator of Song et al. (2012) for linear kernels ``k``, ``g`` (``n × n``, n ≥ 4)."""
    n = len(k)
    k, g = k.clone(), g.clone()
    k.fill_diagonal_(0)
    g.fill_diagonal_(0)
    ones_k, ones_l = k.sum(1), g.sum(1)
    return ((k * g).sum() + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2 * (ones_k @ ones_l) / (n - 2)) \
        / (n * (n - 3))


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment (Kornblith et al., 2019) between two sets of features of the same ``n``
    examples, the debiased form (their eq. with Song et al.'s unbiased HSIC): with fewer examples than
    dimensions — a conv map has thousands — the plain form reads high for unrelated features (two independent
    Gaussian sets of 1,000 examples × 8,192 dimensions give ~0.85); the debiased one gives ~0. Computed with the
    examples' Gram matrices (``n × n``; features flattened, however wide). 1: the same up to a rotation and a
    scale; ~0: no linear relation. Invariant to orthogonal transforms and isotropic scaling, so it compares two
    layers of different widths without fitting anything."""
    if len(x) != len(y):
        raise ValueError(f"linear_cka needs the same examples on both sides, got {len(x)} and {len(y)}")
    if len(x) < 4:
        return float("nan")
    k, g = _gram(x), _gram(y)
    denominator = (_hsic(k, k) * _hsic(g, g)).clamp_min(0).sqrt().item()
    return _hsic(k, g).item() / denominator if denominator > 0 else 0.0


def probe_features(features: torch.Tensor) -> torch.Tensor:
    """What the probe reads of a batch of features: maps ``(C, H, W)`` average-pooled to at most
    ``PROBE_GRID × PROBE_GRID`` positions (so that a wide map does not give the probe more dimensions than
    examples), then flattened; flat features as they are."""
    if features.dim() == 4:
        h, w = features.shape[-2:]
        features = F.adaptive_avg_pool2d(features.float(), (min(h, PROBE_GRID), min(w, PROBE_GRID)))
    return features.flatten(1).float()


def _loo_accuracy(ridge: float, u: torch.Tensor, s: torch.Tensor, projected: torch.Tensor, onehot: torch.Tensor,
                  prior: torch.Tensor, labels: torch.Tensor) -> float:
    """Leave-one-out accuracy of the ridge fit with penalty ``ridge``, from the SVD ``u, s`` of the standardised
    features (exact for ridge: each example's left-out prediction from its leverage)."""
    shrink = s.pow(2) / (s.pow(2) + ridge)
    fitted = u @ (shrink[:, None] * projected)
    leverage = (u.pow(2) * shrink).sum(1, keepdim=True)
    left_out = (fitted - leverage * (onehot - prior)) / (1 - leverage).clamp_min(1e-9)
    return ((left_out + prior).argmax(1) == labels).double().mean().item()


def probe_accuracy(features: torch.Tensor, labels: torch.Tensor, classes: int) -> float:
    """Held-out accuracy of a linear classifier fitted in closed form: ridge regression onto one-hot labels
    over standardised features, two-fold (fit on one half of the examples, score on the other, both ways; the
    mean of the two). The ridge is chosen on the fitting half alone, by leave-one-out accuracy (exact for ridge,
    from one SVD) over ``PROBE_RIDGES``: with as many dimensions as examples a fixed small ridge interpolates
    noise. Closed form, so the figure depends on no optimiser, schedule or seed.

    Args:
        features: ``(n, d)`` features (``probe_features`` of a layer's output).
        labels: ``(n,)`` class indices.
        classes: the number of classes.
    """
    x, y = features.double(), labels.long()
    n = len(x)
    if n < 8:
        return float("nan")
    half = n // 2
    correct = 0
    for fit, score in ((slice(0, half), slice(half, n)), (slice(half, n), slice(0, half))):
        mean, std = x[fit].mean(0), x[fit].std(0).clamp_min(1e-6)
        onehot = F.one_hot(y[fit], classes).double()
        prior = onehot.mean(0)
        u, s, vt = torch.linalg.svd((x[fit] - mean) / std, full_matrices=False)
        projected = u.T @ (onehot - prior)
        m = len(u)
        ridge = max((r * m for r in PROBE_RIDGES),
                    key=functools.partial(_loo_accuracy, u=u, s=s, projected=projected, onehot=onehot, prior=prior,
                                          labels=y[fit]))
        weights = vt.T @ ((s / (s.pow(2) + ridge))[:, None] * projected)
        predicted = (((x[score] - mean) / std) @ weights + prior).argmax(1)
        correct += (predicted == y[score]).sum().item()
    return correct / n
