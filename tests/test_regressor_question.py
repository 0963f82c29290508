"""Issue 20's measurements: linear CKA and the closed-form probe (what the guided features hold, without a
regressor), the regressor-first reading of stage 1 (the student frozen for its first N epochs), the per-epoch
diagnostics and ``fitnets diagnose``."""

import json

import pytest
import torch

from fitnets.core.fitnet import FitNet
from fitnets.core.representations import linear_cka, probe_accuracy, probe_features
from fitnets.errors import FitNetsError
from fitnets.training.config import OptimConfig, load_config
from fitnets.training.engine import build_optimizer, train_step
from fitnets.training import evaluate
from fitnets.training.evaluate import HintEval, evaluate_hint, first_features, representation_fit
from fitnets.training.loading import Data
from fitnets.training.run import Run
from fitnets.training.steps import HintStep
from fitnets.tools.cli import main
from test_hint_fit import synthetic


def test_linear_cka_is_one_for_the_same_features_up_to_rotation_and_scale_and_near_zero_for_unrelated_ones():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 40, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(40, 40, generator=g))
    assert linear_cka(x, 3 * x @ rotation) == pytest.approx(1.0, abs=1e-9)
    # wider than there are examples, as conv maps are: the debiased form stays near 0 for independent features
    # (the plain form gives ~0.85 here)
    wide = torch.randn(300, 2000, generator=g)
    assert abs(linear_cka(wide, torch.randn(300, 1500, generator=g))) < 0.05
    half = linear_cka(x[:, :20], torch.cat([x[:, 10:20], torch.randn(300, 10, generator=g)], 1))
    assert 0.3 < half < 0.7   # half of one side's dimensions shared
    with pytest.raises(ValueError):
        linear_cka(x, x[:10])


def test_the_probe_decodes_labels_written_in_the_features_and_not_noise():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 10, (600,), generator=g)
    noise = torch.randn(600, 8, 2, 2, generator=g)
    assert probe_features(noise).shape == (600, 8 * 2 * 2)
    assert probe_features(torch.randn(2, 3, 16, 16)).shape == (2, 3 * 4 * 4)  # pooled to at most 4 × 4
    assert probe_accuracy(probe_features(noise), labels, 10) < 0.2           # chance: 0.1
    signal = noise.clone()
    signal[:, :, 0, 0] += 3 * torch.nn.functional.one_hot(labels, 10)[:, :8]  # classes 8 and 9 share "none"
    assert probe_accuracy(probe_features(signal), labels, 10) > 0.6          # the best possible: ~0.85


def test_regressor_first_epochs_train_the_regressor_alone_and_leave_the_student_as_it_was(tiny):
    teacher, student = tiny(width=16), tiny(width=8)
    fitnet = FitNet(teacher, student, "block.0", "block.0", torch.zeros(1, 1, 8, 8))
    step = HintStep(fitnet, lambda x, index: fitnet.hint_features(x), regressor_first=1)
    optim = OptimConfig(name="adam", lr=0.01, weight_decay=1e-3, max_norm=0.05)  # max-norm would change any layer
    optimizer = build_optimizer([{"params": fitnet.stage1_parameters()}], optim)
    constrained = [student.stem[0], student.block[0]]
    before = {k: v.clone() for k, v in student.state_dict().items()}
    regressor = {k: v.clone() for k, v in fitnet.regressor.state_dict().items()}
    batch = (torch.randn(16, 1, 8, 8), torch.zeros(16, dtype=torch.long), torch.arange(16))
    for _ in range(3):
        train_step(step, optimizer, batch, 0, max_norm=optim.max_norm, constrained=constrained)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert any(not torch.equal(regressor[k], v) for k, v in fitnet.regressor.state_dict().items())
    assert step.epoch_metrics(0) == {"student_frozen": 1.0} and step.epoch_metrics(1) == {"student_frozen": 0.0}
    train_step(step, optimizer, batch, 1, max_norm=optim.max_norm, constrained=constrained)  # epoch 2: both train
    assert not torch.equal(before["stem.0.weight"], student.state_dict()["stem.0.weight"])


@pytest.mark.parametrize("pairs, message", [
    ([("hint_stage.epochs", 2), ("hint_stage.regressor_first", 3)], "between 0 and hint_stage.epochs (2)"),
    ([("hint_stage.regressor_first", -1)], "between 0 and"),
    ([("method", "kd"), ("hint_stage.diagnostics", 100)], "belong to FitNets' stage 1"),
    ([("hint_stage.diagnostics", 3)], "at least 8 examples"),
])
def test_bad_settings_are_one_line_errors(pairs, message):
    with pytest.raises(FitNetsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, pairs)


def test_a_run_logs_the_diagnostics_per_hint_epoch_and_diagnose_gives_both_ends(tmp_path, capsys):
    config = load_config(None, [("method", "fitnet"), ("epochs", 1), ("hint_stage.epochs", 2), ("data.batch_size", 32),
                                ("hint_stage.regressor_first", 1), ("hint_stage.diagnostics", 48),
                                ("out", str(tmp_path)), ("name", "run")])
    data = Data(*(synthetic(n, i, size=28) for i, n in enumerate((128, 64, 64))))
    run = Run(config, progress=False)
    run.build(data)
    assert "the first epoch trains the regressor alone" in run.plan(data)
    assert "linear probe and CKA on 48 validation examples" in run.plan(data)
    results = run.execute(data=data)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    hint = [r for r in rows if r["stage"] == "hint"]
    assert [r["student_frozen"] for r in hint] == [1.0, 0.0]
    for row in hint:
        assert 0 <= row["val_guided_probe_acc"] <= 1 and 0 <= row["val_hint_probe_acc"] <= 1
        assert -1 <= row["val_cka"] <= 1
    assert "val_cka" not in next(r for r in rows if r["stage"] == "main")
    assert results["stages"]["hint"]["val_cka"] in [r["val_cka"] for r in hint]  # the selected weights' figure

    # the frozen first epoch left the student as the seed made it: the same figures as a fresh one
    fresh = Run(config, progress=False)
    fresh.build(data)
    init = evaluate_hint(fresh.fitnet, data.val, 1000, fresh.inputs, 48)
    assert init["cka"] == pytest.approx(hint[0]["val_cka"], abs=1e-9)
    assert init["guided_probe_acc"] == pytest.approx(hint[0]["val_guided_probe_acc"], abs=1e-9)
    # what `fitnets diagnose` reads: the first 48 examples only, in batches that do not divide them
    alone = representation_fit(*first_features(fresh.fitnet, data.val, 48, 20, fresh.inputs), data.val.num_classes)
    assert alone == pytest.approx({key: init[key] for key in alone}, abs=1e-6)


def test_the_frozen_teachers_probe_is_fitted_once_per_stage(monkeypatch):
    config = load_config(None, [("method", "fitnet"), ("hint_stage.diagnostics", 48)])
    data = Data(*(synthetic(n, i, size=28) for i, n in enumerate((64, 64, 64))))
    run = Run(config, progress=False)
    run.build(data)
    fitted = []
    monkeypatch.setattr(evaluate, "probe_accuracy", lambda *args: fitted.append(args) or 0.5)
    validate = HintEval(run.fitnet, data.val, 1000, run.inputs, 48)
    first, second = validate()[0], validate()[0]
    assert len(fitted) == 3   # the guided features' probe each time, the hint's once
    assert first["val_hint_probe_acc"] == second["val_hint_probe_acc"] == 0.5


def test_diagnose_measures_a_runs_student_untrained_and_trained(tmp_path, capsys, fashion_dir):
    flags = ["--train-size", "256", "--val-size", "64", "--epochs", "1", "--hint-epochs", "1", "--batch-size", "64",
             "--data-dir", str(fashion_dir), "--out", str(tmp_path), "--no-progress"]
    assert main(["distill", *flags, "--name", "fit", "--regressor-first", "1", "--hint-diagnostics", "64"]) == 0
    assert main(["distill", *flags, "--name", "ce", "--method", "ce"]) == 0
    capsys.readouterr()

    def diagnose(run, *more):
        assert main(["diagnose", str(tmp_path / run), "--examples", "64", "--json", *more]) == 0
        return json.loads(capsys.readouterr().out)

    frozen = next(json.loads(line) for line in (tmp_path / "fit" / "metrics.jsonl").read_text().splitlines())
    init = diagnose("fit", "--init")   # the student as seed 0 made it: what the frozen epoch measured
    assert init["student"] == "initialised" and init["examples"] == 64
    assert init["cka"] == pytest.approx(frozen["val_cka"], abs=1e-9)
    assert init["guided_probe_acc"] == pytest.approx(frozen["val_guided_probe_acc"], abs=1e-9)
    trained = diagnose("ce")          # a ce run names the default teacher: its hint is the reference
    assert trained["student"] == "trained" and trained["hint"] == "conv2" and trained["guided"] == "conv4"
    assert trained["hint_probe_acc"] == init["hint_probe_acc"]    # the same teacher on the same split
    assert trained["cka"] != init["cka"]


def test_diagnose_refuses_what_it_cannot_measure(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["diagnose", str(tmp_path / "run")]) == 2
    assert "not a run folder" in capsys.readouterr().err
