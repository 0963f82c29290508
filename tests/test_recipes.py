"""The recipes: which stages each method has, what each trains, constrains and saves — and a FitNet for every
registered model's default hint or guided layer."""


import pytest
import torch

from fitnets import FitNet, FrozenTeacher, create_model, list_models, model_spec
from fitnets.data.loader import ImageData
from fitnets.training.config import choices, load_config
from fitnets.training.engine import RunContext, build_optimizer, run_stage
from fitnets.training.loading import Data
from fitnets.training.recipes import METHODS, Parts
from fitnets.training.steps import HintStep, KDStep, OneStageStep
from fitnets.training.teacher_outputs import CachedOutputs, LiveOutputs, teacher_source


def synthetic(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageData(torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g), 10)


def parts(tiny, method="fitnet", cache=True, **overrides):
    config = load_config(None, [("method", method), *overrides.items()])
    data = Data(synthetic(), synthetic(32, 1), synthetic(32, 2))
    teacher, student = FrozenTeacher(tiny(width=16)), tiny(width=8)
    fitnet = FitNet(teacher, student, "block.0", "stem", torch.zeros(1, 1, 8, 8)) if METHODS[method].hints else None
    config.teacher_cache = cache
    from fitnets.core.inputs import InputFormat

    logits = teacher_source(teacher, "logits", data.train, config, teacher, progress=False)
    hints = teacher_source(fitnet.hint_features, "hints", data.train, config, teacher, progress=False) if fitnet else None
    return Parts(config, data, student, InputFormat(), logits, hints, None, teacher, fitnet)


def test_the_method_table_is_what_the_config_accepts():
    assert choices("method") == tuple(METHODS)
    with pytest.raises(Exception, match="method must be one of ce, kd"):
        load_config(None, [("method", "hints-only")])


def test_fitnets_is_hints_then_kd(tiny):
    p = parts(tiny)
    hint, main = METHODS["fitnet"].recipe(p)
    assert (hint.name, main.name) == ("hint", "main")
    # stage 1: the student's layers up to the guided one, and the regressor; saved with the regressor
    assert isinstance(hint.step, HintStep) and hint.keep == "best"
    assert {id(w) for w in hint.optimized()} == {id(w) for w in p.fitnet.stage1_parameters()}
    assert set(hint.saves) == {"model", "regressor"}
    assert hint.epochs == p.config.hint_stage.epochs and hint.optim is p.config.hint_stage.optim
    # stage 2: KD on every student weight, the regressor gone
    assert isinstance(main.step, KDStep)
    assert {id(w) for w in main.optimized()} == {id(w) for w in p.student.parameters()}
    assert set(main.saves) == {"model"} and main.epochs == p.config.epochs
    assert [type(t) for t in hint.teachers] == [type(t) for t in main.teachers] == [CachedOutputs]
    assert main.step.epoch_metrics(0) == {"kd_weight": 4.0}


def test_no_validation_data_means_no_validation_rule(tiny):
    p = parts(tiny)
    p.data = Data(p.data.train, p.data.train.subset(torch.arange(0)), p.data.test)
    assert all(stage.validate is None for stage in METHODS["fitnet"].recipe(p))
    assert all(stage.validate is not None for stage in METHODS["fitnet"].recipe(parts(tiny)))


def test_stage_descriptions_compute_nothing(tiny):
    p = parts(tiny)
    for stage in METHODS["fitnet"].recipe(p):
        assert all(t.values is None for t in stage.teachers)  # a cache is filled by the engine, when the stage trains


def test_pretrained_layers_get_their_own_learning_rate_in_stage_2(tiny):
    p = parts(tiny, **{"hint_stage.pretrained_lr_scale": 0.1, "optim.lr": 0.01})
    _, main = METHODS["fitnet"].recipe(p)
    optimizer = build_optimizer(main.optimize, main.optim)
    pre = {id(w) for w in p.fitnet.stage1_parameters()}
    for group in optimizer.param_groups:
        expected = 0.001 if all(id(w) in pre for w in group["params"]) else 0.01
        assert group["lr"] == pytest.approx(expected)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(p.student.parameters()))


def test_other_methods(tiny):
    (ce,) = METHODS["ce"].recipe(parts(tiny, "ce"))
    assert ce.teachers == () and ce.step.epoch_metrics(0) == {}
    (kd,) = METHODS["kd"].recipe(parts(tiny, "kd", cache=False))
    assert isinstance(kd.step, KDStep) and [type(t) for t in kd.teachers] == [LiveOutputs]
    p = parts(tiny, "fitnet-onestage")
    (one,) = METHODS["fitnet-onestage"].recipe(p)
    assert isinstance(one.step, OneStageStep) and set(one.saves) == {"model", "regressor"}
    assert {id(w) for w in one.optimized()} == {id(w) for w in [*p.student.parameters(), *p.fitnet.regressor.parameters()]}
    assert one.step.epoch_metrics(0) == {} and len(one.teachers) == 1
    p = parts(tiny, "fitnet-onestage-kd")
    (both,) = METHODS["fitnet-onestage-kd"].recipe(p)
    assert both.step.epoch_metrics(0) == {"kd_weight": 4.0} and len(both.teachers) == 2  # hints and logits
    x, y = p.data.train.images[:8].float() / 255, p.data.train.labels[:8]
    index = torch.arange(8)
    for t in both.teachers:
        t.prepare()
    losses, _ = both.step(x, y, index, 0)
    assert set(losses) == {"loss", "task_loss", "hint_mse", "kd_loss"}
    torch.testing.assert_close(losses["loss"], losses["task_loss"] + 100 * losses["hint_mse"] + 4 * losses["kd_loss"])


def test_stage_1_max_norm_leaves_the_layers_above_the_guided_one_alone(tiny, tmp_path):
    p = parts(tiny, **{"hint_stage.optim.max_norm": 0.05, "hint_stage.epochs": 1})
    hint, _ = METHODS["fitnet"].recipe(p)
    above = {k: v.clone() for k, v in p.student.state_dict().items() if not k.startswith("stem")}
    assert any(w.flatten(1).norm(dim=1).max() > 0.05 for k, w in above.items() if k.endswith("weight"))
    run_stage(hint, RunContext(p.data.train, tmp_path, {}, 16, 0, progress=False))
    assert all(torch.equal(p.student.state_dict()[k], v) for k, v in above.items())
    assert (p.student.stem[0].weight.flatten(1).norm(dim=1) <= 0.05 + 1e-6).all()


# ---------------------------------------------------------------- every registered default layer

TEACHER_FOR = {(3, 32, 32): "resnet56", (1, 28, 28): "paper-mnist-teacher"}
STUDENT_FOR = {(3, 32, 32): "resnet20", (1, 28, 28): "paper-mnist-fitnet"}


def check_fitnet(teacher_name, student_name):
    torch.manual_seed(0)
    shape = model_spec(student_name).input_shape
    teacher, student = create_model(teacher_name), create_model(student_name)
    fitnet = FitNet(teacher, student, model_spec(teacher_name).hint, model_spec(student_name).guided,
                    torch.zeros(2, *shape))
    x = torch.rand(2, *shape)
    hint = fitnet.hint_features(x)
    assert fitnet.regressor(fitnet.guided_features(x)).shape == hint.shape
    loss = fitnet.hint_loss(x, hint)
    assert torch.isfinite(loss)
    loss.backward()
    trained = set(fitnet.stage1_parameter_names())
    assert trained and all((p.grad is not None) == (n in trained) for n, p in student.named_parameters()
                           if p.requires_grad)
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("name", [n for n in list_models() if model_spec(n).guided])
def test_every_default_guided_layer_builds_a_fitnet(name):
    check_fitnet(TEACHER_FOR[model_spec(name).input_shape], name)


@pytest.mark.parametrize("name", [n for n in list_models() if model_spec(n).hint])
def test_every_default_hint_layer_builds_a_fitnet(name):
    check_fitnet(name, STUDENT_FOR[model_spec(name).input_shape])


def test_every_method_of_the_table_has_its_recipe():
    from fitnets.training.recipes import RECIPES

    assert set(RECIPES) == set(METHODS) and all(METHODS[m].recipe is RECIPES[m] for m in METHODS)
    assert [m for m in METHODS if METHODS[m].stage1] == ["fitnet"]  # what validate's stage-1 rule reads


def test_the_command_line_builds_each_part_of_a_run_once(monkeypatch, fashion_dir, tmp_path):
    """The plan and the training are the same stages: the recipe, the FitNet and the frozen teacher are built once
    per run (the CLI built the whole stage graph twice)."""
    from fitnets.core import fitnet as fitnet_module
    from fitnets.tools.cli import main
    from fitnets.training import run as run_module

    calls = {"recipe": 0, "fitnet": 0, "teacher": 0}
    recipe, make_fitnet, wrap = METHODS["fitnet"].recipe, run_module.FitNet, run_module.frozen_teacher

    def counted(name, fn):
        def call(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return call

    monkeypatch.setattr(METHODS["fitnet"], "recipe", counted("recipe", recipe))
    monkeypatch.setattr(run_module, "FitNet", counted("fitnet", make_fitnet))
    monkeypatch.setattr(run_module, "frozen_teacher", counted("teacher", wrap))
    assert fitnet_module.FitNet is make_fitnet
    assert main(["distill", "--method", "fitnet", "--epochs", "1", "--hint-epochs", "1", "--train-size", "200",
                 "--val-size", "100", "--set", "data.test_size=100", "--no-progress", "--out", str(tmp_path)]) == 0
    assert calls == {"recipe": 1, "fitnet": 1, "teacher": 1}
