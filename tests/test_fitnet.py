import pytest
import torch
from torch import nn

from fitnets import FitNet, FitNetsError, FrozenTeacher, create_model
from fitnets.training.engine import build_optimizer
from fitnets.training.config import OptimConfig


def paper_pair():
    torch.manual_seed(0)
    return create_model("paper-mnist-teacher"), create_model("paper-mnist-fitnet")


def make_fitnet():
    teacher, student = paper_pair()
    return FitNet(teacher, student, hint="conv2", guided="conv4", example_input=torch.zeros(1, 1, 28, 28))


def test_shapes_and_regressor():
    fitnet = make_fitnet()
    assert fitnet.hint_shape == (48, 4, 4) and fitnet.guided_shape == (16, 4, 4)
    assert fitnet.regressor[0].kernel_size == (1, 1)  # §4.2: the MNIST regressor is 1×1, 16 → 48
    assert fitnet.regressor(torch.zeros(2, 16, 4, 4)).shape == (2, 48, 4, 4)


def test_stage1_trains_only_layers_up_to_guided():
    fitnet = make_fitnet()
    names = fitnet.stage1_parameter_names()
    assert names == [f"conv{i}.conv.{p}" for i in range(1, 5) for p in ("weight", "bias")]
    ids = {id(p) for p in fitnet.stage1_parameters()}
    assert all(id(p) in ids for p in fitnet.regressor.parameters())
    assert not any(id(p) in ids for p in fitnet.teacher.module.parameters())


def test_stage1_parameters_found_for_custom_model(tiny):
    teacher, student = tiny(width=16), tiny(width=8)
    fitnet = FitNet(teacher, student, hint="block.0", guided="stem", example_input=torch.zeros(1, 1, 8, 8))
    assert fitnet.stage1_parameter_names() == ["stem.0.weight", "stem.0.bias"]
    assert fitnet.regressor[0].in_channels == 8 and len(fitnet.regressor) == 1  # block.0 is a bare conv


def test_no_gradient_reaches_the_teacher():
    fitnet = make_fitnet()
    loss = fitnet.hint_loss(torch.rand(4, 1, 28, 28))
    assert loss.dim() == 0 and loss.item() > 0
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in fitnet.teacher.module.parameters())
    assert fitnet.student.conv1.conv.weight.grad is not None
    assert fitnet.student.conv5.conv.weight.grad is None  # above the guided layer: untouched in stage 1
    assert fitnet.regressor[0].weight.grad is not None


def test_teacher_stays_frozen_and_out_of_optimizers():
    teacher, _ = paper_pair()
    frozen = FrozenTeacher(teacher)
    teacher.train()  # someone flips it from outside
    frozen(torch.zeros(1, 1, 28, 28))
    assert not teacher.training
    fitnet = make_fitnet()
    optimizer = build_optimizer([{"params": fitnet.stage1_parameters()}], OptimConfig())
    in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not in_opt & {id(p) for p in fitnet.teacher.module.parameters()}


def test_regressor_absent_from_student_state_dict():
    fitnet = make_fitnet()
    keys = set(fitnet.student.state_dict())
    fresh = create_model("paper-mnist-fitnet")
    assert keys == set(fresh.state_dict())
    fresh.load_state_dict(fitnet.student.state_dict(), strict=True)
    assert not any(k.startswith("regressor") for k in keys)


def test_bad_layers_fail_early():
    teacher, student = paper_pair()
    with pytest.raises(FitNetsError, match="Did you mean: conv2"):
        FitNet(teacher, student, hint="conv22", guided="conv4", example_input=torch.zeros(1, 1, 28, 28))
    with pytest.raises(FitNetsError, match="no regressor joins"):
        FitNet(teacher, student, hint="conv2", guided="classifier", example_input=torch.zeros(1, 1, 28, 28))


def test_agreement_metrics():
    from fitnets.data import ImageData
    from fitnets.training.evaluate import evaluate_agreement

    torch.manual_seed(0)
    data = ImageData(torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8), torch.zeros(50, dtype=torch.long), 10)
    model = create_model("paper-mnist-fitnet").eval()
    same = evaluate_agreement(model, model, data)
    assert same["agreement"] == 1.0 and abs(same["kl"]) < 1e-5
    def shifted(x):  # a confident teacher that always picks the class after the student's
        return 10.0 * torch.nn.functional.one_hot((model(x).argmax(1) + 1) % 10, 10).float()

    other = evaluate_agreement(model, shifted, data)
    assert other["agreement"] == 0.0 and other["kl"] > 1.0


def test_onestage_losses_match_formula():
    fitnet = FitNet(*paper_pair(), hint="conv2", guided="conv4", example_input=torch.zeros(1, 1, 28, 28),
                    regressor_activation="relu", regressor_batch_norm=True)
    assert isinstance(fitnet.regressor[1], torch.nn.BatchNorm2d) and isinstance(fitnet.regressor[2], torch.nn.ReLU)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([1, 2, 3, 4])
    fitnet.student.eval()
    fitnet.regressor.eval()
    losses, logits = fitnet.onestage_losses(x, y, fitnet.hint_features(x), beta=100.0)
    with torch.no_grad():
        expected_logits = fitnet.student(x)
        hint = fitnet.teacher.features(x, ["conv2"])[0]
        mse = ((fitnet.regressor(fitnet.student.conv4(fitnet.student.conv3(fitnet.student.conv2(
            fitnet.student.conv1(x))))) - hint) ** 2).mean()
    assert torch.allclose(logits, expected_logits)
    ce = torch.nn.functional.cross_entropy(expected_logits, y)
    assert losses["loss"].item() == pytest.approx((ce + 100 * mse).item(), rel=1e-5)


def test_bf16_teacher_agrees_with_fp32():
    from fitnets.training.evaluate import evaluate_agreement

    teacher = create_model("paper-mnist-teacher", pretrained=True)
    fp32 = FrozenTeacher(teacher)
    bf16 = FrozenTeacher(create_model("paper-mnist-teacher", pretrained=True), dtype=torch.bfloat16, channels_last=True)
    from fitnets.data import load_idx_dataset, take

    data = take(load_idx_dataset("fashion-mnist", "test"), 1000)
    agreement = evaluate_agreement(fp32.module, bf16, data)
    assert agreement["agreement"] >= 0.99 and agreement["kl"] < 1e-3
    x = torch.rand(8, 1, 28, 28)
    assert bf16(x).dtype == torch.float32
    assert torch.allclose(bf16.features(x, ["conv2"])[0], fp32.features(x, ["conv2"])[0], atol=0.1, rtol=0.05)


def test_eval_mode_restores_each_submodules_flag_even_on_error():
    from fitnets.core.modes import eval_mode

    model = create_model("paper-mnist-fitnet").train()
    model.conv3.eval()  # deliberately left in eval mode by its user
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise RuntimeError
    assert model.training and model.conv1.training and not model.conv3.training


def test_an_example_input_without_its_batch_dimension_is_named(tiny):
    """A convolution takes an unbatched (C, H, W) too: its (C, H, W) output was read as a token sequence."""
    with pytest.raises(FitNetsError, match=r"example_input has shape \(1, 8, 8\).*batch dimension.*stem\.0.*"
                       r"unsqueeze\(0\)") as err:
        FitNet(tiny(width=16), tiny(), "block", "block", torch.zeros(1, 8, 8))
    assert "token" not in str(err.value)
    FitNet(tiny(width=16), tiny(), "block", "block", torch.zeros(1, 8, 8).unsqueeze(0))


@pytest.mark.parametrize("student", [nn.Sequential(nn.Flatten(), nn.Identity()),          # no parameters
                                     nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(36, 4))])  # none before "0"
def test_a_student_the_hint_cannot_train_is_one_line_from_fitnet(student):
    teacher = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 4))
    with pytest.raises(FitNetsError, match="no trainable parameters|depends on no trainable parameter"):
        FitNet(teacher, student, "0", "0", torch.zeros(1, 1, 6, 6))
