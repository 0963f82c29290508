import pytest
import torch

from fitnets.errors import FitNetsError
from fitnets.models import create_model, list_models, model_spec


def paper_count(model) -> int:
    """The paper's convention: weights only (no biases)."""
    return sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))


@pytest.mark.parametrize("name", list_models())
def test_every_model_output_shape_and_finite(name):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(2, *model_spec(name).input_shape)
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_paper_parameter_counts():
    # FITNETS.md: with every maxout layer counted with 2 pieces, teacher 360,816 and FitNet 29,944.
    assert paper_count(create_model("paper-mnist-teacher", pieces_last=2)) == 360_816
    assert paper_count(create_model("paper-mnist-fitnet", pieces_last=2)) == 29_944
    # With the 4 pieces of the authors' code (our default), and biases:
    assert sum(p.numel() for p in create_model("paper-mnist-teacher").parameters()) == 418_714
    assert sum(p.numel() for p in create_model("paper-mnist-fitnet").parameters()) == 36_226


def test_unknown_model_suggests():
    with pytest.raises(FitNetsError, match="Did you mean: paper-mnist-fitnet"):
        create_model("paper-mnist-fitnett")


def test_shipped_teacher_loads():
    teacher = create_model("paper-mnist-teacher", pretrained=True)
    assert torch.isfinite(teacher(torch.zeros(1, 1, 28, 28))).all()


def test_no_shipped_weights_for_student():
    with pytest.raises(FitNetsError, match="ships no pretrained weights"):
        create_model("paper-mnist-fitnet", pretrained=True)


def test_entry_point_plugins_register_user_models(tmp_path, monkeypatch):
    import importlib.metadata as md

    import fitnets.models.registry as registry

    (tmp_path / "my_fitnets_plugin.py").write_text(
        "from torch import nn\nfrom fitnets import register_model\n"
        "register_model('my-mlp', lambda num_classes=10: nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes)),"
        " input_shape=(1, 28, 28))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = [md.EntryPoint("mine", "my_fitnets_plugin", "fitnets.models")]
    monkeypatch.setattr(md, "entry_points", lambda group=None: fake if group == "fitnets.models" else [])
    monkeypatch.setattr(registry, "_PLUGINS_LOADED", False)
    try:
        assert create_model("my-mlp")(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
        assert "my-mlp" in list_models()
    finally:
        registry._REGISTRY.pop("my-mlp", None)
