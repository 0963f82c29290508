"""The engine's loop on synthetic data in memory (no dataset needed): checkpoints, early stopping, which
weights a stage ends with, max-norm, learning-rate schedules, optimizers, resume of an early-stopped stage."""

import json

import pytest
import torch
from torch import nn

from fitnets.checkpoint import load_checkpoint
from fitnets.data.loader import ImageData
from fitnets.training.config import OptimConfig
from fitnets.training.engine import (ResumePoint, RunContext, Stage, build_optimizer, constrained_layers, lr_factor,
                                     run_stage)
from fitnets.training.evaluate import AccuracyEval
from fitnets.training.steps import CEStep, Step


def separable(n=96, seed=0) -> ImageData:
    """Two classes told apart by the mean brightness of a 1×4×4 image."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = (labels[:, None, None, None] * 160 + torch.randint(0, 90, (n, 1, 4, 4), generator=g)).to(torch.uint8)
    return ImageData(images, labels, 2)


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))


def ctx_for(tmp_path, data, **kw):
    return RunContext(data, tmp_path, {}, batch_size=16, seed=0, progress=False, **kw)


class Scripted:
    """A validation rule that returns the given scores epoch after epoch."""

    def __init__(self, scores):
        self.scores = list(scores)

    def __call__(self):
        score = self.scores.pop(0)
        return {"val_score": score}, score


def ce_stage(model, validate, epochs=3, **kw):
    optim = kw.pop("optim", OptimConfig(lr=0.01, schedule="constant"))
    return Stage("main", CEStep(model), [{"params": list(model.parameters())}], {"model": model}, validate, epochs,
                 optim, **kw)


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_loop_trains_logs_and_checkpoints_every_epoch(tmp_path):
    data, model = separable(), small_net()
    stage = ce_stage(model, AccuracyEval(model, separable(40, seed=1)), epochs=4)
    summary = run_stage(stage, ctx_for(tmp_path, data))
    logged = rows(tmp_path)
    assert [r["epoch"] for r in logged] == [1, 2, 3, 4]
    assert logged[-1]["loss"] < logged[0]["loss"] and logged[-1]["val_acc"] > 0.9
    assert all("train_acc" in r and r["images_per_s"] > 0 for r in logged)  # the step gives logits
    _, meta = load_checkpoint(tmp_path / "last.safetensors")
    assert meta["stage"] == "main" and meta["epoch"] == 3
    assert summary["best_epoch"] == max(range(4), key=lambda i: logged[i]["val_acc"]) + 1


def test_training_accuracy_is_counted_for_any_step_that_gives_logits(tmp_path):
    class Squared(Step):  # no loss named "task_loss"
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, y, index, epoch):
            logits = self.model(x)
            return {"loss": (logits - nn.functional.one_hot(y, 2)).pow(2).mean()}, logits

    model = small_net()
    stage = Stage("main", Squared(model), [{"params": list(model.parameters())}], {"model": model},
                  Scripted([0.0]), 1, OptimConfig(lr=0.01))
    run_stage(stage, ctx_for(tmp_path, separable()))
    assert 0 < rows(tmp_path)[0]["train_acc"] <= 1


def test_patience_stops_the_stage_early(tmp_path):
    model = small_net()
    stage = ce_stage(model, Scripted([0.5, 0.4, 0.6, 0.3, 0.2, 0.1, 0.0]), epochs=7, patience=2)
    summary = run_stage(stage, ctx_for(tmp_path, separable()))
    # best at epoch 3; epochs 4 and 5 are no better: stop after epoch 5
    assert [r["epoch"] for r in rows(tmp_path)] == [1, 2, 3, 4, 5] and summary["best_epoch"] == 3


def test_an_early_stopped_stage_is_not_trained_further_on_resume(tmp_path):
    model = small_net()
    run_stage(ce_stage(model, Scripted([0.5, 0.1, 0.0]), epochs=6, patience=2), ctx_for(tmp_path, separable()))
    assert len(rows(tmp_path)) == 3
    point = ResumePoint.read(tmp_path / "last.safetensors")
    again = small_net()
    run_stage(ce_stage(again, Scripted([]), epochs=6, patience=2), ctx_for(tmp_path, separable()), point)
    assert len(rows(tmp_path)) == 3  # no epoch was added
    best, _ = load_checkpoint(tmp_path / "main_best.safetensors")
    assert all(torch.equal(again.state_dict()[k], best["model." + k]) for k in again.state_dict())


@pytest.mark.parametrize("keep", ["best", "last"])
def test_the_stage_ends_with_the_best_or_the_last_weights(tmp_path, keep):
    model = small_net()
    snapshots = []

    class Recording(Scripted):
        def __call__(self):
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
            return super().__call__()

    run_stage(ce_stage(model, Recording([0.2, 0.9, 0.1]), keep=keep), ctx_for(tmp_path, separable()))
    expected = snapshots[1] if keep == "best" else snapshots[2]
    assert not torch.equal(snapshots[1]["3.weight"], snapshots[2]["3.weight"])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())


def test_max_norm_constrains_only_what_the_stage_optimises(tmp_path):
    model = small_net()
    with torch.no_grad():
        model[3].weight.mul_(50)  # rows far above the bound
    head_before = model[3].weight.clone()
    stage = Stage("hint", CEStep(model), [{"params": list(model[0].parameters())}], {"model": model},
                  Scripted([0.0, 0.0]), 2, OptimConfig(lr=0.01, max_norm=0.2))
    assert constrained_layers(stage.saves.values(), stage.optimized()) == [model[0]]
    run_stage(stage, ctx_for(tmp_path, separable()))
    conv_norms = model[0].weight.flatten(1).norm(dim=1)
    assert (conv_norms <= 0.2 + 1e-6).all()
    assert torch.equal(model[3].weight, head_before)   # neither trained nor renormalised


def test_max_norm_applies_to_every_optimised_layer(tmp_path):
    model = small_net()
    with torch.no_grad():
        model[3].weight.mul_(50)
    run_stage(ce_stage(model, Scripted([0.0]), epochs=1, optim=OptimConfig(lr=0.01, max_norm=0.5)),
              ctx_for(tmp_path, separable()))
    assert (model[3].weight.norm(dim=1) <= 0.5 + 1e-6).all() and (model[0].weight.flatten(1).norm(dim=1) <= 0.5 + 1e-6).all()


def test_learning_rate_schedules():
    step = OptimConfig(schedule="step", milestones=[2, 4], gamma=0.1)
    assert [lr_factor(step, e * 10, 60, 10) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cosine = OptimConfig(schedule="cosine")
    assert lr_factor(cosine, 0, 100, 10) == 1.0
    assert lr_factor(cosine, 50, 100, 10) == pytest.approx(0.5)
    assert lr_factor(cosine, 100, 100, 10) == pytest.approx(0.0)
    assert lr_factor(OptimConfig(schedule="constant"), 70, 100, 10) == 1.0


def test_the_loop_follows_the_step_schedule(tmp_path):
    model = small_net()
    optim = OptimConfig(lr=0.01, schedule="step", milestones=[1, 2], gamma=0.5)
    run_stage(ce_stage(model, Scripted([0.0] * 3), optim=optim), ctx_for(tmp_path, separable()))
    assert [r["lr"] for r in rows(tmp_path)] == pytest.approx([0.01, 0.005, 0.0025])


def test_optimizers_and_learning_rate_scales():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    groups = [{"params": list(a.parameters()), "lr_scale": 0.1}, {"params": list(b.parameters())}]
    rmsprop = build_optimizer(groups, OptimConfig(name="rmsprop", lr=0.005))
    assert isinstance(rmsprop, torch.optim.RMSprop) and rmsprop.defaults["alpha"] == 0.9  # the paper's decay
    assert [g["lr"] for g in rmsprop.param_groups] == pytest.approx([0.0005, 0.005])
    assert "lr_scale" in groups[0]  # the stage's description is not consumed
    sgd = build_optimizer(groups, OptimConfig(name="sgd", lr=0.1, momentum=0.9))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    assert isinstance(build_optimizer(groups, OptimConfig()), torch.optim.Adam)


def test_rmsprop_trains(tmp_path):
    model = small_net()
    run_stage(ce_stage(model, Scripted([0.0] * 3), optim=OptimConfig(name="rmsprop", lr=0.005, schedule="constant")),
              ctx_for(tmp_path, separable()))
    logged = rows(tmp_path)
    assert logged[-1]["loss"] < logged[0]["loss"]


def test_without_validation_data_the_stage_ends_with_its_last_weights(tmp_path):
    model = small_net()
    summary = run_stage(ce_stage(model, None, epochs=2), ctx_for(tmp_path, separable()))
    assert summary["best_epoch"] == 0 and not (tmp_path / "main_best.safetensors").exists()
    last, _ = load_checkpoint(tmp_path / "last.safetensors")
    assert all(torch.equal(model.state_dict()[k], last["model." + k]) for k in model.state_dict())
    assert "val_acc" not in rows(tmp_path)[-1]


def test_without_validation_data_patience_never_stops_the_stage(tmp_path, caplog):
    model = small_net()
    with caplog.at_level("WARNING", logger="fitnets.training.engine"):
        run_stage(ce_stage(model, None, epochs=6, patience=2), ctx_for(tmp_path, separable()))
    assert [r["epoch"] for r in rows(tmp_path)] == [1, 2, 3, 4, 5, 6]  # no score, nothing stale
    assert [r.getMessage() for r in caplog.records if "patience" in r.getMessage()] == [
        "stage main: patience=2 has no effect without validation data (data.val_size=0): it trains all 6 epochs"]
