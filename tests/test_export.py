import json

import pytest
import torch

from fitnets.checkpoint import save_checkpoint
from fitnets.errors import FitNetsError
from fitnets.tools.cli import main
from fitnets.tools.export import export_student, load_exported
from fitnets.models import create_model


def test_export_round_trip_and_onnx_parity(tmp_path):
    torch.manual_seed(0)
    model = create_model("paper-mnist-fitnet")
    info = export_student(model, "paper-mnist-fitnet", tmp_path)
    assert (tmp_path / "model.onnx").is_file()
    assert info["onnx_max_abs_diff"] < 1e-4
    fresh = load_exported(tmp_path)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(fresh(x), model.eval()(x))
    assert json.loads((tmp_path / "model.json").read_text())["parameters"] == 36_226


def test_cli_export_of_weights(tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    save_checkpoint(weights, create_model("resnet8", num_classes=10).state_dict(), {})
    code = main(["export", f"resnet8:{weights}", "--out", str(tmp_path / "x"), "--no-onnx"])
    assert code == 2  # resnet8 defaults to 100 classes: the weights do not fit, and it says so
    assert "wrong shape" in capsys.readouterr().err
    save_checkpoint(weights, create_model("resnet8").state_dict(), {})
    assert main(["export", f"resnet8:{weights}", "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "max abs diff" in out and not (tmp_path / "x" / "regressor").exists()
    assert sum(p.numel() for p in load_exported(tmp_path / "x").parameters()) == 83_892


def test_cli_export_of_a_vit_runs_at_any_batch(tmp_path):
    """The ViT's class token was expanded to the traced batch: the ONNX file declared a dynamic batch but ran
    only at the export's."""
    import onnxruntime

    torch.manual_seed(0)
    model = create_model("vit-fmnist").eval()
    weights = tmp_path / "w.safetensors"
    save_checkpoint(weights, model.state_dict(), {})
    assert main(["export", f"vit-fmnist:{weights}", "--out", str(tmp_path / "x")]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "x" / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 17):
        x = torch.randn(batch, 1, 28, 28)
        got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        with torch.no_grad():
            assert (got - model(x)).abs().max() < 1e-4, batch


class _FixedBatch(torch.nn.Module):
    """Flattens with ``len(x)``: the trace records the export's batch as a constant."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(x.reshape(len(x), -1))


def test_export_refuses_an_onnx_file_that_runs_only_at_the_export_batch(tmp_path):
    with pytest.raises(FitNetsError, match=r"batch 1.*test_export\.py:\d+") as err:
        export_student(_FixedBatch(), "fixed-batch", tmp_path, input_shape=(1, 8, 8))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "model.onnx").exists() and not (tmp_path / "model.json").exists()
