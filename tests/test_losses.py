import math

import pytest
import torch

from fitnets.core.losses import hint_loss, kd_loss, kd_weight_at, soft_cross_entropy
from fitnets.errors import FitNetsError


def test_hint_loss_matches_formula():
    torch.manual_seed(0)
    u, r = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    per_example = [0.5 * sum((u[b] - r[b]).flatten().tolist()[i] ** 2 for i in range(48)) for b in range(5)]
    assert hint_loss(u, r).item() == pytest.approx(sum(per_example) / 5, rel=1e-5)


def test_hint_loss_shape_mismatch():
    with pytest.raises(FitNetsError, match=r"hint \(2, 3\) and regressed guided output \(2, 4\) differ"):
        hint_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(FitNetsError, match="needs batches"):
        hint_loss(torch.zeros(3), torch.zeros(3))


def _softmax(row, t):
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("tau_squared", [False, True])
def test_kd_loss_matches_formula(tau_squared):
    torch.manual_seed(1)
    s, t, y = torch.randn(4, 6), torch.randn(4, 6) * 3, torch.tensor([0, 5, 2, 2])
    lam, tau = 2.5, 3.0
    hard = soft = 0.0
    for b in range(4):
        hard += -math.log(_softmax(s[b].tolist(), 1.0)[y[b]])
        pt, ps = _softmax(t[b].tolist(), tau), _softmax(s[b].tolist(), tau)
        soft += -sum(p * math.log(q) for p, q in zip(pt, ps))
    hard, soft = hard / 4, soft / 4
    expected = hard + lam * (tau ** 2 if tau_squared else 1) * soft
    out = kd_loss(s, t, y, lam, tau, tau_squared)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["task_loss"].item() == pytest.approx(hard, rel=1e-5)
    assert out["kd_loss"].item() == pytest.approx(soft, rel=1e-5)


def test_kd_zero_weight_skips_teacher_term():
    s, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    out = kd_loss(s, None, y, kd_weight=0.0)
    assert set(out) == {"loss", "task_loss"}


def test_soft_cross_entropy_gradient_equals_kl_gradient():
    s = torch.randn(3, 5, requires_grad=True)
    t = torch.randn(3, 5)
    g1, = torch.autograd.grad(soft_cross_entropy(s, t, 3.0), s)
    kl = torch.nn.functional.kl_div(torch.log_softmax(s / 3, 1), torch.softmax(t / 3, 1), reduction="batchmean")
    g2, = torch.autograd.grad(kl, s)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_kd_weight_decays_linearly_from_4_to_1():
    weights = [kd_weight_at(e, 4.0, 1.0, 4) for e in range(6)]
    assert weights == pytest.approx([4.0, 3.0, 2.0, 1.0, 1.0, 1.0])
    assert kd_weight_at(0, 4.0, 1.0, 1) == 2.5   # one epoch cannot decay: the mean of 4 → 1
