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
    model = create_model(name, num_classes=7)
    x = torch.randn(2, *model_spec(name).input_shape)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    spec = model_spec(name)
    for path in filter(None, (spec.hint, spec.guided)):   # the registered layers exist and run
        assert path in dict(model.named_modules())


def test_paper_parameter_counts():
    # The paper's counts (Table 4, ~361K and ~30K) recomputed with every maxout layer at 2 pieces: 360,816 and 29,944.
    assert paper_count(create_model("paper-mnist-teacher", pieces_last=2)) == 360_816
    assert paper_count(create_model("paper-mnist-fitnet", pieces_last=2)) == 29_944
    # With the 4 pieces of the authors' code (our default), and biases:
    assert sum(p.numel() for p in create_model("paper-mnist-teacher").parameters()) == 418_714
    assert sum(p.numel() for p in create_model("paper-mnist-fitnet").parameters()) == 36_226


@pytest.mark.parametrize("name,count", [
    ("paper-cifar-teacher", 9_044_360), ("paper-fitnet1", 249_576), ("paper-fitnet2", 861_928),
    ("paper-fitnet3", 1_503_304), ("paper-fitnet4", 2_544_712), ("paper-svhn-teacher", 4_928_800)])
def test_paper_cifar_svhn_parameter_counts(name, count):
    # Table 5's counts recomputed under the paper's convention: weights only, every maxout layer with 2 pieces.
    assert paper_count(create_model(name, fc_pieces=2)) == count


BENCHMARK_COUNTS = {  # the CIFAR-100 distillation benchmark's parameter counts, at 100 classes
    "resnet8": 83_892, "resnet14": 181_108, "resnet20": 278_324, "resnet32": 472_756, "resnet44": 667_188,
    "resnet56": 861_620, "resnet110": 1_736_564, "resnet8x4": 1_233_540, "resnet32x4": 7_433_860,
    "wrn_16_1": 180_916, "wrn_16_2": 703_284, "wrn_40_1": 569_780, "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028, "vgg11": 9_277_284, "vgg13": 9_462_180, "vgg16": 14_774_436, "vgg19": 20_086_692,
    # not listed in the issue: pinned from the benchmark's architectures (mobile_half, ShuffleV1, ShuffleV2)
    "mobilenetv2": 812_836, "shufflenetv1": 949_258, "shufflenetv2": 1_355_528}


@pytest.mark.parametrize("name", sorted(BENCHMARK_COUNTS))
def test_cifar100_zoo_parameter_counts(name):
    assert sum(p.numel() for p in create_model(name).parameters()) == BENCHMARK_COUNTS[name]


@pytest.mark.parametrize("name,millions", [
    ("paper-cifar-teacher", 725.1), ("paper-fitnet1", 30.2), ("paper-fitnet2", 107.8), ("paper-fitnet3", 323.9),
    ("paper-fitnet4", 381.7)])
def test_paper_multiplications(name, millions):
    from fitnets.core.profile import count_macs

    spec = model_spec(name)
    assert count_macs(create_model(name, **spec.paper_kwargs), spec.input_shape) / 1e6 == pytest.approx(millions, abs=0.05)


def test_mac_counter_on_a_hand_counted_net():
    from torch import nn

    from fitnets.core.profile import count_macs

    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 3 * 3, 5))   # 5×5 input → 3×3
    assert count_macs(net, (2, 5, 5)) == 4 * 3 * 3 * (2 * 9) + 36 * 5
    up = nn.ConvTranspose2d(3, 2, 2)
    assert count_macs(up, (3, 4, 4)) == 3 * 16 * 2 * 4


def test_paper_cifar_hint_and_fitnet4_regressor():
    from fitnets import FitNet

    fitnet = FitNet(create_model("paper-cifar-teacher"), create_model("paper-fitnet4"), "conv2",
                    model_spec("paper-fitnet4").guided, torch.zeros(1, 3, 32, 32))
    assert fitnet.hint_shape == (192, 7, 7)          # needs ceil-mode pooling; floor would give 6×6
    assert fitnet.guided_shape == (80, 8, 8) and fitnet.regressor[0].kernel_size == (2, 2)


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


def test_a_broken_plugin_leaves_the_built_in_models_and_is_named(tmp_path, monkeypatch, caplog):
    import importlib.metadata as md

    import fitnets.models.registry as registry

    (tmp_path / "good_plugin.py").write_text(
        "from torch import nn\nfrom fitnets import register_model\n"
        "register_model('good-mlp', lambda: nn.Linear(4, 2), input_shape=(4,))\n")
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs a package that is not installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = [md.EntryPoint("broken", "broken_plugin", "fitnets.models"),
            md.EntryPoint("good", "good_plugin", "fitnets.models")]
    monkeypatch.setattr(md, "entry_points", lambda group=None: fake if group == "fitnets.models" else [])
    monkeypatch.setattr(registry, "_PLUGINS_LOADED", False)
    monkeypatch.setattr(registry, "_BROKEN_PLUGINS", {})
    try:
        with caplog.at_level("WARNING"):
            names = list_models()
        assert "paper-mnist-fitnet" in names and "good-mlp" in names   # built-ins and the good plugin survive
        assert "skipped the fitnets.models plugin 'broken'" in caplog.text
        with pytest.raises(FitNetsError, match="plugin 'broken' failed to load.*needs a package"):
            create_model("broken-net")            # and the plugin's absence is never silent
        list_models()                             # loading again does not retry or raise
    finally:
        registry._REGISTRY.pop("good-mlp", None)


@pytest.mark.parametrize("depth", [5, 7, 9, 11])
@pytest.mark.parametrize("prefix,budget", [("depth{}-30m", 30e6), ("depth{}-107m", 107e6), ("fmnist-depth{}", 5e6)])
def test_depth_study_students_fit_their_budget(depth, prefix, budget):
    from fitnets.core.profile import count_macs
    from fitnets.models.depth_study import _macs, width_for_budget

    name = prefix.format(depth)
    spec = model_spec(name)
    model = create_model(name, **spec.paper_kwargs)
    macs = count_macs(model, spec.input_shape)
    assert 0.8 * budget < macs <= budget
    convs = sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert convs + 2 == depth
    c, s = spec.input_shape[0], spec.input_shape[1]
    assert _macs(depth, width_for_budget(depth, budget, c, s, 100 if "fmnist" in name else 500), c, s,
                 100 if "fmnist" in name else 500) == macs


def test_external_library_models_give_a_clear_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(FitNetsError, match="'timm:resnet18' needs timm.*pip install timm"):
        create_model("timm:resnet18")
