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


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_loses_nothing(tmp_path, monkeypatch):
    """safetensors reports a full disk as its own error type (not an OSError), with this text."""
    from safetensors import SafetensorError

    from fitnets import checkpoint

    (tmp_path / "config.yaml").write_text("seed: 0\n")  # a run folder
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, {"a": torch.arange(3.0)}, {"epoch": 1})

    def full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 10)  # the part written before the disk filled up
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(FitNetsError) as err:
        save_checkpoint(path, {"a": torch.arange(4.0)}, {"epoch": 2})
    message = str(err.value)
    assert "\n" not in message and "No space left on device" in message
    assert "the previous checkpoint is intact" in message and f"--resume {tmp_path}" in message
    monkeypatch.undo()
    assert load_checkpoint(path)[1] == {"epoch": 1}  # the last checkpoint, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "last.safetensors"]  # no temporary left


def test_a_pickled_model_is_named_as_such_with_the_state_dict_fix(tmp_path, tiny):
    path = tmp_path / "model.pt"
    torch.save(tiny(), path)  # the whole object, not its state_dict
    with pytest.raises(FitNetsError, match=r"pickled Python object \(conftest\.TinyNet\).*model\.state_dict\(\)") as err:
        load_weights(tiny(), path)
    assert "corrupt" not in str(err.value) and "\n" not in str(err.value)
    torch.save(tiny().state_dict(), path)  # what the message says to do
    load_weights(tiny(), path)
