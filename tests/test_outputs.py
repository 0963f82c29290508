"""One rule for where the logits are in a model's output — a tensor, a mapping's "logits", an object's .logits,
a tuple's first tensor, or a named key — used by training, evaluation, agreement and export."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from fitnets.checkpoint import read_weights
from fitnets.core.outputs import logits_of, logits_origin
from fitnets.data.loader import batches
from fitnets.data.loader import ImageData
from fitnets.errors import FitNetsError
from fitnets.models.registry import register_model
from fitnets.training.config import load_config
from fitnets.training.loading import Data
from fitnets.training.run import Run


@dataclass
class ClassifierOutput:  # the shape of other libraries' output classes
    logits: torch.Tensor
    hidden_states: torch.Tensor | None = None


class Net(nn.Module):
    """A small convnet whose forward returns its logits in one of several containers."""

    def __init__(self, style: str = "tensor", num_classes: int = 10, width: int = 8):
        super().__init__()
        self.style = style
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(8 * width, num_classes)

    def forward(self, x):
        h = self.features(x).flatten(1)
        logits = self.head(h)
        return {"tensor": lambda: logits, "dataclass": lambda: ClassifierOutput(logits, h),
                "dict": lambda: {"features": h, "logits": logits}, "tuple": lambda: (logits, h),
                "named": lambda: {"scores": logits, "features": h}, "none": lambda: {"features": h},
                "features-first": lambda: (self.features(x), logits)}[self.style]()


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """``Net`` under a registry name for the runs, for this module's tests only (the registry is global)."""
    from fitnets.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_model("test-outputs-net", Net, input_shape=(1, 8, 8), hint="features.3", guided="features.3",
                   description="tests: a convnet returning its logits in several containers")


def test_the_rule():
    t = torch.randn(2, 3)
    assert logits_of(t) is t
    assert logits_of({"logits": t, "x": 1}) is t
    assert logits_of(ClassifierOutput(t)) is t
    assert logits_of((t, torch.zeros(1))) is t and logits_of([None, t]) is t
    assert logits_of({"scores": t}, "scores") is t and logits_of(ClassifierOutput(t, t * 2), "hidden_states") is not t
    with pytest.raises(FitNetsError, match=r"returned a dict with keys 'features'.*logits_key"):
        logits_of({"features": t})
    with pytest.raises(FitNetsError, match="no tensor 'scores'.*returned a ClassifierOutput with fields logits"):
        logits_of(ClassifierOutput(t), "scores")


def test_a_tuple_whose_first_tensor_is_not_the_logits_says_which_was_taken_and_how_to_choose():
    features, logits = torch.randn(2, 16, 7, 7), torch.randn(2, 10)
    with pytest.raises(FitNetsError, match=r"a tuple of 2 tensors: \[0\] \(2, 16, 7, 7\), \[1\] \(2, 10\).*took "
                       r"\[0\].*\(batch, classes\).*logits_key=1") as err:
        logits_of((features, logits))
    assert "num_classes" not in str(err.value)
    assert logits_of((features, logits), 1) is logits and logits_of((features, logits), "1") is logits
    assert logits_of([features, logits], "[1]") is logits
    with pytest.raises(FitNetsError, match=r"no tensor \[2\]"):
        logits_of((features, logits), 2)
    # for the run's count of classes, when the first tensor is flat: where its number came from
    assert logits_origin((torch.randn(2, 64), logits)) == (
        " ([0] of the tuple its forward returns: [0] (2, 64), [1] (2, 10); choose another with logits_key=INDEX)")


def synthetic(n, seed):
    g = torch.Generator().manual_seed(seed)
    return ImageData(torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g), 10)


@pytest.fixture
def teacher_weights(tmp_path):
    from fitnets.checkpoint import save_checkpoint

    torch.manual_seed(0)
    path = tmp_path / "teacher.safetensors"
    save_checkpoint(path, Net(width=16).state_dict(), {"model": "test-outputs-net"})
    return path


@pytest.mark.parametrize("method", ["ce", "kd", "fitnet", "fitnet-onestage"])
@pytest.mark.parametrize("student,teacher", [("dataclass", "dict"), ("tuple", "named")])
def test_runs_read_the_logits_of_any_container(tmp_path, teacher_weights, method, student, teacher):
    overrides = [("method", method), ("student", "test-outputs-net"), ("model_args", {"style": student}),
                 ("teacher", f"test-outputs-net:{teacher_weights}"), ("teacher_args", {"style": teacher, "width": 16}),
                 ("epochs", 1), ("hint_stage.epochs", 1), ("data.batch_size", 32), ("out", str(tmp_path)),
                 ("name", "run")]
    if teacher == "named":
        overrides.append(("teacher_logits_key", "scores"))
    data = Data(synthetic(96, 0), synthetic(32, 1), synthetic(32, 2))
    results = Run(load_config(None, overrides), progress=False).execute(data=data)
    # the figures are those of the tensors picked out by hand: the student's .logits / [0], the teacher's
    # ["logits"] / ["scores"] (another tensor — the features — would give other predictions)
    trained = Net(student)
    trained.load_state_dict(read_weights(tmp_path / "run" / "student.safetensors"))
    frozen = Net(teacher, width=16)
    frozen.load_state_dict(read_weights(teacher_weights))
    pick = {"dataclass": lambda o: o.logits, "tuple": lambda o: o[0], "dict": lambda o: o["logits"],
            "named": lambda o: o["scores"]}
    x, y, _ = next(batches(data.test, len(data.test)))
    with torch.no_grad():
        s, t = pick[student](trained.eval()(x)), pick[teacher](frozen.eval()(x))
    assert results["test_acc"] == pytest.approx((s.argmax(1) == y).float().mean().item())
    assert results["test_loss"] == pytest.approx(nn.functional.cross_entropy(s, y).item(), rel=1e-5)
    if method != "ce":  # the agreement with the teacher was computed from both models' logits
        assert results["teacher_agreement"] == pytest.approx((s.argmax(1) == t.argmax(1)).float().mean().item())


def test_a_model_without_logits_by_the_rule_fails_before_training_in_one_line(tmp_path, teacher_weights):
    config = load_config(None, [("method", "kd"), ("student", "test-outputs-net"), ("model_args", {"style": "none"}),
                                ("teacher", f"test-outputs-net:{teacher_weights}"), ("teacher_args", {"width": 16}),
                                ("out", str(tmp_path)), ("name", "run")])
    data = Data(synthetic(64, 0), synthetic(32, 1), synthetic(32, 2))
    with pytest.raises(FitNetsError, match="cannot find the logits.*returned a dict with keys 'features'"):
        Run(config, progress=False).execute(data=data)
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_a_run_of_a_model_returning_features_then_logits_names_the_element_not_num_classes(tmp_path):
    """Its first tensor, a (16, 2, 2) map, was read as logits of 2 classes: "set num_classes=10"."""
    overrides = [("method", "ce"), ("student", "test-outputs-net"), ("model_args", {"style": "features-first"}),
                 ("epochs", 1), ("data.batch_size", 32), ("out", str(tmp_path)), ("name", "run")]
    data = Data(synthetic(64, 0), synthetic(32, 1), synthetic(32, 2))
    with pytest.raises(FitNetsError, match=r"took \[0\].*logits_key=1") as err:
        Run(load_config(None, overrides), progress=False).execute(data=data)
    assert "num_classes" not in str(err.value)
    results = Run(load_config(None, [*overrides, ("logits_key", "1")]), progress=False).execute(data=data)
    trained = Net("features-first")
    trained.load_state_dict(read_weights(tmp_path / "run" / "student.safetensors"))
    x, y, _ = next(batches(data.test, len(data.test)))
    with torch.no_grad():
        logits = trained.eval()(x)[1]
    assert results["test_acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_export_writes_the_logits_alone(tmp_path):
    from fitnets.tools.export import export_student

    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = Net(style="tuple")
    info = export_student(model, "test-outputs-net", tmp_path, {"style": "tuple"})
    import onnx

    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["logits"]
    assert info["onnx_max_abs_diff"] < 1e-4 and info["onnx_batches_checked"] == [1, 3, 4]
    import onnxruntime

    x = torch.randn(3, 1, 8, 8)
    (got,) = onnxruntime.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"images": x.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(got), model(x)[0], atol=1e-5)  # the logits, not the features
