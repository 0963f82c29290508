"""End-to-end runs on a small real Fashion-MNIST subset: the three methods, resume, the teacher cache."""

import json

import pytest
import torch

import fitnets.training.engine as engine
from fitnets.checkpoint import load_checkpoint
from fitnets.tools.cli import main
from fitnets.training.config import load_config
from fitnets.training.run import Run

pytestmark = pytest.mark.slow

SMALL = ["--train-size", "2000", "--val-size", "500", "--set", "data.test_size=2000", "--lr", "0.003",
         "--set", "optim.schedule=constant", "--set", "hint_stage.optim.lr=0.003", "--no-progress"]


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["ce", "kd", "fitnet", "fitnet-onestage"])
def test_cli_trains_each_method(method, tmp_path, fashion_dir, capsys):
    # β = 100 (the benchmark's) is tuned to its features' scale; the maxout hint here is larger.
    extra = ["--set", "hint_stage.beta=10"] if method == "fitnet-onestage" else []
    code = main(["distill", "--method", method, "--epochs", "3", "--hint-epochs", "2", "--out", str(tmp_path),
                 "--name", method, *SMALL, *extra])
    assert code == 0, capsys.readouterr().err
    run_dir = tmp_path / method
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test_acc"] > 0.6  # chance is 0.1
    rows = metrics(run_dir)
    main_rows = [r for r in rows if r["stage"] == "main"]
    assert len(main_rows) == 3 and main_rows[-1]["loss"] < main_rows[0]["loss"]
    if method == "fitnet":
        hint_rows = [r for r in rows if r["stage"] == "hint"]
        assert len(hint_rows) == 2 and hint_rows[1]["hint_loss"] < hint_rows[0]["hint_loss"]
    if method == "fitnet-onestage":
        assert main_rows[-1]["hint_mse"] < main_rows[0]["hint_mse"] and "kd_loss" not in main_rows[0]
    elif method != "ce":
        assert main_rows[0]["kd_weight"] == 4.0 and main_rows[-1]["kd_weight"] == 1.0
    # the run's student loads into the bare architecture, and evaluate reproduces the test accuracy
    capsys.readouterr()
    assert main(["evaluate", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert f"test accuracy {results['test_acc']:.4f}, " in printed and "(2000 images)" in printed, printed
    tensors, meta = load_checkpoint(run_dir / "student.safetensors")
    assert not any(k.startswith("regressor") for k in tensors)
    assert (run_dir / "config.yaml").is_file()
    if method == "fitnet":  # ship it: the exported student alone, checked against ONNX Runtime
        assert main(["export", str(run_dir), "--out", str(tmp_path / "export")]) == 0
        from fitnets.tools.export import load_exported

        exported = load_exported(tmp_path / "export")
        assert set(exported.state_dict()) == set(tensors)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, fashion_dir, monkeypatch, capsys):
    args = ["distill", "--method", "fitnet", "--epochs", "2", "--hint-epochs", "2", "--out", str(tmp_path),
            "--train-size", "1000", "--val-size", "300", "--set", "data.test_size=500", "--no-progress"]
    assert main(args + ["--name", "whole"]) == 0

    real = engine.train_one_epoch
    calls = {"n": 0}

    def interrupted(*a, **k):  # the 4th epoch (stage 2, epoch 2) is killed mid-way
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(engine, "train_one_epoch", interrupted)
    assert main(args + ["--name", "cut"]) == 130
    assert "--resume" in capsys.readouterr().err
    _, meta = load_checkpoint(tmp_path / "cut" / "last.safetensors")
    assert (meta["stage"], meta["epoch"]) == ("main", 0)
    monkeypatch.setattr(engine, "train_one_epoch", real)
    assert main(["distill", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0

    whole, _ = load_checkpoint(tmp_path / "whole" / "student.safetensors")
    cut, _ = load_checkpoint(tmp_path / "cut" / "student.safetensors")
    assert whole.keys() == cut.keys()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert metrics(tmp_path / "cut")[-1]["loss"] == metrics(tmp_path / "whole")[-1]["loss"]


def test_cached_and_live_teacher_give_the_same_losses(tmp_path, fashion_dir):
    losses = {}
    for cache in (True, False):
        config = load_config(None, [("method", "fitnet"), ("epochs", 1), ("hint_stage.epochs", 1),
                                    ("teacher_cache", cache), ("data.train_size", 600), ("data.val_size", 200),
                                    ("data.test_size", 200), ("name", f"cache-{cache}"), ("out", str(tmp_path))])
        Run(config, progress=False).execute()
        losses[cache] = metrics(tmp_path / f"cache-{cache}")
    for cached, live in zip(losses[True], losses[False]):
        for key in ("loss", "hint_loss", "kd_loss", "task_loss"):
            if key in cached:
                assert cached[key] == pytest.approx(live[key], rel=1e-4)


def test_augmentation_uses_the_store_or_says_why_the_teacher_runs_live(tmp_path, fashion_dir, caplog, monkeypatch):
    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "cache"))
    base = [("method", "kd"), ("epochs", 1), ("data.pad", 2), ("data.train_size", 300), ("data.val_size", 100),
            ("data.test_size", 100), ("out", str(tmp_path))]
    with caplog.at_level("INFO"):
        Run(load_config(None, [*base, ("name", "store")]), progress=False).execute()
    assert "created teacher-output store" in caplog.text and str(tmp_path / "cache") in caplog.text
    assert metrics(tmp_path / "store")[-1]["store_hit_rate"] < 0.2  # pad 2: 25 views, one epoch fills ≤ 1/25
    caplog.clear()
    with caplog.at_level("INFO"):
        Run(load_config(None, [*base, ("name", "live"), ("store.enabled", False)]), progress=False).execute()
    assert "no teacher logits cache: random augmentation" in caplog.text
    assert "store_hit_rate" not in metrics(tmp_path / "live")[-1]


def test_compile_and_bf16_options_train_like_the_default(tmp_path, fashion_dir):
    """torch.compile, a bf16 teacher with a bf16 cache and a bf16-autocast student: the same run, losses close."""
    rows = {}
    variants = {"plain": [], "compiled": [("compile", True)],
                "bf16": [("teacher_dtype", "bfloat16"), ("cache_dtype", "bfloat16"), ("student_dtype", "bfloat16")]}
    for name, extra in variants.items():
        config = load_config(None, [("method", "fitnet"), ("epochs", 1), ("hint_stage.epochs", 1),
                                    ("data.train_size", 512), ("data.val_size", 200), ("data.test_size", 200),
                                    ("name", name), ("out", str(tmp_path)), *extra])
        Run(config, progress=False).execute()
        rows[name] = metrics(tmp_path / name)
    for a, b in zip(rows["plain"], rows["compiled"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)
    for a, b in zip(rows["plain"], rows["bf16"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=0.05)
