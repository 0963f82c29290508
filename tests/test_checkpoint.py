import pytest
import torch

from fitnets.checkpoint import (load_checkpoint, load_weights, optimizer_from_flat, optimizer_to_flat,
                                save_checkpoint)
from fitnets.errors import FitNetsError
from fitnets.models import create_model


def test_round_trip_and_atomic_replace(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.arange(3.0)}, {"epoch": 1})
    save_checkpoint(path, {"a": torch.arange(4.0)}, {"epoch": 2, "nested": {"x": [1, 2]}})
    tensors, meta = load_checkpoint(path)
    assert torch.equal(tensors["a"], torch.arange(4.0)) and meta == {"epoch": 2, "nested": {"x": [1, 2]}}
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary left behind


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.zeros(100)}, {})
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(FitNetsError, match="corrupt or truncated"):
        load_checkpoint(path)
    with pytest.raises(FitNetsError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_mismatched_weights(tmp_path):
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, create_model("paper-mnist-fitnet").state_dict(), {})
    with pytest.raises(FitNetsError, match="do not match PaperMnistTeacher.*unexpected"):
        load_weights(create_model("paper-mnist-teacher"), path)
    with pytest.raises(FitNetsError, match="wrong shape"):
        load_weights(create_model("paper-mnist-fitnet", num_classes=5), path)
    load_weights(create_model("paper-mnist-fitnet"), path)


def test_optimizer_state_round_trip():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, plain = optimizer_to_flat(opt.state_dict())
    opt2 = torch.optim.Adam(model.parameters(), lr=0.1)
    opt2.load_state_dict(optimizer_from_flat(tensors, plain))
    for a, b in zip(opt.state_dict()["state"].values(), opt2.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
