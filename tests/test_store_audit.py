"""The per-epoch store's audit (``fitnets.training.store.audit_size``): enough stored slots are recomputed each
epoch that a transform changed for a share of the items under the same class name is noticed."""

import math

import pytest
import torch
from torch import nn

import fitnets
from conftest import user_module
from fitnets.training.store import audit_size

USER = '''
import torch

class Shifted(torch.utils.data.Dataset):
    """Images whose transform adds ``shift`` to every tenth item: a change to 10% of the items that the store's
    key (class, size, selection) cannot see."""
    def __init__(self, n=200, shift=0.0):
        g = torch.Generator().manual_seed(0)
        self.x, self.y, self.shift = torch.rand(n, 1, 6, 6, generator=g), torch.arange(n) % 3, shift
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):
        return self.x[i] + (self.shift if i % 10 == 0 else 0.0), int(self.y[i])
'''


def test_the_audit_size_bounds_the_chance_of_missing_a_change():
    for share in (0.5, 0.1, 0.05, 0.01):
        k = audit_size(share)
        assert (1 - share) ** k <= 0.01 < (1 - share) ** (k - 1)   # the least that bounds it
    assert audit_size(0.1) == 44 and audit_size(0.1, miss=0.001) == math.ceil(math.log(0.001) / math.log(0.9))


def _kd(user, tmp_path, name, shift, **overrides):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    torch.manual_seed(1)
    student = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    return fitnets.distill(teacher, student, user.Shifted(shift=shift), method="kd", out=str(tmp_path), name=name,
                           epochs=1, val_size=20, batch_size=20, progress=False,
                           overrides={"data.workers": 0, "store.per_epoch": True, **overrides})


def test_a_transform_changed_for_a_tenth_of_the_items_drops_the_store(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "cache"))
    user = user_module(tmp_path, monkeypatch, "shifted", USER)
    _kd(user, tmp_path, "before", 0.0)
    caplog.clear()
    changed = _kd(user, tmp_path, "after", 0.5)
    assert "does not match this run's data" in caplog.text
    live = _kd(user, tmp_path, "live", 0.5, **{"store.enabled": False})
    assert changed["test_loss"] == live["test_loss"]   # nothing stale was used


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_the_audit_share_is_validated(share):
    with pytest.raises(fitnets.FitNetsError, match="store.audit_share must be in"):
        fitnets.load_config(None, [("store.audit_share", share)])
