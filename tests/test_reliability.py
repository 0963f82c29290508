"""Resume that honours the user, run folders no one can clobber, no message that promises what is not there."""

import json
import os
import subprocess
import sys

import pytest
import torch

import fitnets.training.engine as engine
from fitnets.checkpoint import load_checkpoint
from fitnets.errors import FitNetsError
from fitnets.tools.cli import main
from fitnets.training.config import RESUME_MAY_CHANGE, RunConfig, flatten, load_config, resume_changes, to_dict
from fitnets.training.run import Run
from fitnets.training.run_folder import CLAIM, claim_folder

SMALL = ["--train-size", "600", "--val-size", "200", "--set", "data.test_size=300", "--no-progress"]


def last_line(err):
    return err.strip().splitlines()[-1]


def interrupt_at(monkeypatch, call):
    """Make the ``call``-th epoch raise KeyboardInterrupt (as Ctrl-C would)."""
    real, calls = engine.train_one_epoch, {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(engine, "train_one_epoch", interrupted)
    return lambda: monkeypatch.setattr(engine, "train_one_epoch", real)


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_resume_rule_lists_every_field_it_allows():
    keys = set(flatten(to_dict(RunConfig())))
    assert RESUME_MAY_CHANGE <= keys  # no stale name in the rule
    for fixed in ("method", "student", "teacher", "model_args", "data.name", "data.train_size", "seed", "kd.temperature"):
        assert fixed not in RESUME_MAY_CHANGE
    saved = RunConfig()
    assert resume_changes(saved, load_config(None, [("optim.lr", 0.01), ("epochs", 40)])) == {
        "optim.lr": (1e-3, 0.01), "epochs": (20, 40)}
    with pytest.raises(FitNetsError, match=r"cannot change student \('paper-mnist-fitnet' → 'resnet20'\)"):
        resume_changes(saved, load_config(None, [("student", "resnet20")]))


def test_resume_uses_a_new_learning_rate(tmp_path, monkeypatch, capsys, fashion_dir):
    args = ["train", "--epochs", "2", "--lr", "0.002", "--set", "optim.schedule=constant", "--out", str(tmp_path),
            "--name", "r", *SMALL]
    restore = interrupt_at(monkeypatch, 2)
    assert main(args) == 130
    restore()
    assert main(["train", "--resume", str(tmp_path / "r"), "--lr", "0.0005", "--no-progress"]) == 0
    logged = rows(tmp_path / "r")
    assert [r["lr"] for r in logged] == pytest.approx([0.002, 0.0005])
    assert "lr: 0.0005" in (tmp_path / "r" / "config.yaml").read_text()


def test_a_refused_resume_changes_nothing_in_the_folder(tmp_path, monkeypatch, capsys, fashion_dir):
    args = ["distill", "--method", "fitnet", "--epochs", "1", "--hint-epochs", "1", "--out", str(tmp_path),
            "--name", "f", *SMALL]
    restore = interrupt_at(monkeypatch, 2)  # stage 2 interrupted: the hint epoch is done
    assert main(args) == 130
    restore()
    folder = tmp_path / "f"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()
    # `train --resume` of a FitNets run would switch it to cross-entropy: refused
    assert main(["train", "--resume", str(folder), "--no-progress"]) == 2
    assert "cannot change method ('fitnet' → 'ce')" in last_line(capsys.readouterr().err)
    # a change the rule allows, but a data folder that is not there: refused before anything is written
    assert main(["distill", "--resume", str(folder), "--data-dir", str(tmp_path / "gone"), "--no-progress"]) == 2
    assert "does not exist" in last_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    _, meta = load_checkpoint(folder / "last.safetensors")
    assert main(["distill", "--resume", str(folder), "--no-progress"]) == 0   # still resumable
    results = json.loads((folder / "results.json").read_text())
    assert set(results["stages"]) == {"hint", "main"}  # the hint stage's summary survives the resume
    assert results["train_time_s"] > meta["elapsed_s"] > 0  # and the time trained before it counts


def test_resume_drops_metric_rows_written_after_the_checkpoint(tmp_path, monkeypatch, capsys, fashion_dir):
    args = ["train", "--epochs", "3", "--out", str(tmp_path), "--name", "d", *SMALL]
    restore = interrupt_at(monkeypatch, 2)
    assert main(args) == 130
    restore()
    path = tmp_path / "d" / "metrics.jsonl"
    ghost = dict(rows(tmp_path / "d")[0], epoch=2)  # as if killed between the metrics write and the checkpoint
    path.write_text(path.read_text() + json.dumps(ghost) + "\n")
    assert main(["train", "--resume", str(tmp_path / "d"), "--no-progress"]) == 0
    assert [r["epoch"] for r in rows(tmp_path / "d")] == [1, 2, 3]


def test_a_claimed_folder_cannot_be_taken_by_a_second_run(tmp_path):
    claim_folder(tmp_path / "x")  # this process holds it, as a run that has not checkpointed yet would
    config = load_config(None, [("method", "ce"), ("epochs", 1), ("out", str(tmp_path)), ("name", "x")])
    with pytest.raises(FitNetsError, match="in use by another run"):
        Run(config, progress=False).execute()
    # a claim whose process is gone (killed before its first checkpoint) is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = (tmp_path / "x" / CLAIM).read_text().split()[0]
    (tmp_path / "x" / CLAIM).write_text(f"{owner} {int(dead.stdout)}")
    claim_folder(tmp_path / "x")
    assert (tmp_path / "x" / CLAIM).read_text().split()[1] == str(os.getpid())


def test_two_runs_started_together_one_is_refused(tmp_path, fashion_dir):
    cmd = [sys.executable, "-m", "fitnets", "train", "--epochs", "1", "--out", str(tmp_path), "--name", "same",
           "--seed", "{}", *SMALL]
    procs = [subprocess.Popen([a.format(seed) for a in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (0, 1)]
    outcomes = [(p.wait(), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
    assert any("already holds a run" in err or "in use by another run" in err for _, err in outcomes)
    assert len(rows(tmp_path / "same")) == 1


def test_interrupt_before_the_first_checkpoint_says_nothing_was_saved(tmp_path, monkeypatch, capsys, fashion_dir):
    args = ["train", "--epochs", "2", "--out", str(tmp_path), "--name", "early", *SMALL]
    restore = interrupt_at(monkeypatch, 1)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "nothing was saved" in err and "--resume" not in err
    restore()
    assert main(args) == 0  # the name is free again


def test_nan_in_the_first_epoch_promises_no_checkpoint(tmp_path, monkeypatch, capsys, fashion_dir):
    # Adam at lr 1e30 moves every weight by ~1e30 in its first step: the second step's loss is not finite.
    code = main(["train", "--lr", "1e30", "--set", "optim.schedule=constant", "--epochs", "1", "--out",
                 str(tmp_path), "--name", "nan", "--set", "log_every=1", *SMALL])
    err = capsys.readouterr().err
    assert code == 2, f"a diverged run must stop with exit 2, got {code}:\n{err[-1500:]}"
    last = last_line(err)
    assert "Traceback" not in err and err.count("error: ") == 1, err
    assert last.startswith("error: loss became non-finite in stage main, epoch 1, step "), err
    assert last.endswith("before any checkpoint was written — lower the learning rate and start the run again")
    assert "--resume" not in last
    assert not (tmp_path / "nan" / "last.safetensors").exists()


@pytest.mark.parametrize("key,value,message", [
    ("data.train_size", -5, "data.train_size must be ≥ 1"), ("data.train_size", 0, "data.train_size must be ≥ 1"),
    ("data.test_size", -1, "data.test_size must be ≥ 1"), ("data.batch_size", 0, "data.batch_size must be > 0"),
    ("data.eval_batch_size", -3, "data.eval_batch_size must be > 0"), ("data.pad", -1, "data.pad must be ≥ 0"),
])
def test_sizes_that_would_silently_select_the_wrong_data(key, value, message, capsys):
    assert main(["train", "--set", f"{key}={value}", "--dry-run"]) == 2
    assert message in last_line(capsys.readouterr().err)
