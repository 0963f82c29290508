"""--tensorboard writes every metric of metrics.jsonl (per epoch) and the running loss (per logging step) as
TensorBoard scalars in the run folder; the event file is read back."""

import json

import pytest

from fitnets.tools.cli import main


def scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_every_metric_reaches_tensorboard(tmp_path, capsys, fashion_dir):
    pytest.importorskip("tensorboard")
    argv = ["distill", "--method", "fitnet", "--epochs", "2", "--hint-epochs", "1", "--train-size", "300",
            "--val-size", "100", "--set", "data.test_size=100", "--set", "log_every=2", "--batch-size", "64",
            "--no-progress", "--tensorboard", "--out", str(tmp_path), "--name", "run"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = scalars(tmp_path / "run" / "tensorboard")
    for index, row in enumerate(rows):
        for key, value in row.items():
            if key not in ("stage", "epoch"):
                assert (index, pytest.approx(value, rel=1e-6)) in logged[f"{row['stage']}/{key}"], key
    assert {"hint/val_hint_r2", "main/val_acc", "main/kd_weight"} <= set(logged)
    assert [step for step, _ in logged["main/step_loss"]] == [2, 4, 7, 9]  # every 2 steps of 5 per epoch


def test_a_resumed_run_rewrites_the_events_from_its_metrics(tmp_path, capsys, fashion_dir):
    pytest.importorskip("tensorboard")
    argv = ["distill", "--method", "kd", "--epochs", "1", "--train-size", "300", "--val-size", "100", "--set",
            "data.test_size=100", "--set", "optim.schedule=constant", "--no-progress", "--tensorboard", "--out",
            str(tmp_path), "--name", "run"]
    assert main(argv) == 0
    (tmp_path / "run" / "results.json").unlink()  # as if it had stopped after its first epoch
    assert main(["distill", "--resume", str(tmp_path / "run"), "--epochs", "3", "--no-progress"]) == 0
    logged = scalars(tmp_path / "run" / "tensorboard")
    assert [step for step, _ in logged["main/val_acc"]] == [0, 1, 2]  # each epoch once


class _Broken:
    """An import hook standing for a tensorboard that is installed but fails on import (a protobuf it cannot use)."""

    def find_spec(self, name, path=None, target=None):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise TypeError("Descriptors cannot be created directly.")


def test_a_tensorboard_that_fails_on_import_is_one_line(tmp_path, monkeypatch):
    import sys

    from fitnets.errors import FitNetsError
    from fitnets.training.tensorboard import TensorBoardLog

    for name in [n for n in sys.modules if n.startswith(("torch.utils.tensorboard", "tensorboard"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Broken(), *sys.meta_path])
    with pytest.raises(FitNetsError, match=r"fails on import \(TypeError: Descriptors cannot be created directly\.\)"
                       r".*without --tensorboard") as err:
        TensorBoardLog(tmp_path / "tb")
    assert "\n" not in str(err.value)
