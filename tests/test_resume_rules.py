"""The resume rules, enforced where every path meets: the folder's config is the run's identity, a resume claims
the folder like a fresh start, what a resume cannot honour is refused (not recorded), extending a run says
what it does to the schedules; and the flags every stage reads (--lr, --optimizer), SIGTERM."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from fitnets.tools.cli import main

BASE = ["--method", "fitnet", "--train-size", "300", "--val-size", "100", "--set", "data.test_size=100",
        "--batch-size", "100", "--no-progress"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, fashion_dir):
    out = tmp_path_factory.mktemp("runs")
    assert main(["distill", *BASE, "--epochs", "3", "--hint-epochs", "1", "--out", str(out), "--name", "done"]) == 0
    return out / "done"


@pytest.fixture
def run_dir(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]   # the run may have logged its plan before the check that stopped it
    assert last.startswith("error: ") and err.count("error: ") == 1 and "Traceback" not in err, err
    return last


def edit(run_dir, **changes):
    path = run_dir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        section = config
        *parents, last = key.split(".")
        for p in parents:
            section = section[p]
        section[last] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize("changes, needle", [
    ({"seed": 5}, "seed (0 → 5)"),
    ({"method": "kd"}, "method ('fitnet' → 'kd')"),
    ({"student": "paper-mnist-teacher"}, "student ('paper-mnist-fitnet' → 'paper-mnist-teacher')"),
])
def test_a_hand_edited_identity_is_refused(run_dir, capsys, changes, needle):
    edit(run_dir, **changes)
    before = (run_dir / "config.yaml").read_text()
    err = error(capsys, ["distill", "--resume", str(run_dir), "--epochs", "4"])
    assert "no longer says what its checkpoint was trained with" in err and needle in err
    assert (run_dir / "config.yaml").read_text() == before   # nothing in the folder changed


@pytest.mark.parametrize("text, needle", [("seed: [", "cannot read"), ("", "holds nothing"),
                                          ("- 1\n- 2\n", "holds a list")])
def test_a_broken_config_file_is_one_line(run_dir, capsys, text, needle):
    (run_dir / "config.yaml").write_text(text)
    assert needle in error(capsys, ["distill", "--resume", str(run_dir), "--epochs", "4"])


@pytest.mark.parametrize("argv, needle", [
    (["--epochs", "2"], "cannot shorten it to 2: give at least 3"),
    (["--epochs", "5", "--hint-epochs", "4"], "stage hint of"),
    (["--epochs", "4", "--name", "other"], "cannot change name"),
    ([], "has finished"),
])
def test_what_a_resume_cannot_honour_is_refused_not_recorded(run_dir, capsys, argv, needle):
    before = (run_dir / "config.yaml").read_text(), (run_dir / "results.json").read_text()
    assert needle in error(capsys, ["distill", "--resume", str(run_dir), *argv])
    assert ((run_dir / "config.yaml").read_text(), (run_dir / "results.json").read_text()) == before


def test_a_resume_claims_the_folder(run_dir, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / ".claimed").write_text(f"{socket.gethostname()} {sleeper.pid}")   # a run still training
        assert "in use by another run" in error(capsys, ["distill", "--resume", str(run_dir), "--epochs", "4"])
    finally:
        sleeper.kill()
        sleeper.wait()
    assert main(["distill", "--resume", str(run_dir), "--epochs", "4"]) == 0   # its owner gone: taken over
    assert not (run_dir / ".claimed").exists()                                  # and given back at the end


def test_extending_a_run_says_what_its_schedules_do(run_dir, capsys):
    assert main(["distill", "--resume", str(run_dir), "--epochs", "5", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "resume   after epoch 3 of stage main" in plan
    assert "extending stage main from 3 to 5 epochs lays its cosine learning-rate schedule over the new length" in plan
    assert "and λ goes from 1 to" in plan
    assert main(["distill", "--resume", str(run_dir), "--epochs", "5"]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows] == [("hint", 1), *[("main", e) for e in range(1, 6)]]


def test_a_resume_reads_the_checkpoints_tensors_once(run_dir, monkeypatch):
    """The checks before the run is built and the plan read the checkpoint's header; only the run itself loads
    its tensors (a large model's checkpoint is read once, not once per check)."""
    from fitnets import checkpoint

    read = []
    real = checkpoint.load_file
    monkeypatch.setattr(checkpoint, "load_file", lambda path, *args, **kw: read.append(path) or real(path, *args, **kw))
    assert main(["distill", "--resume", str(run_dir), "--epochs", "4", "--dry-run"]) == 0
    last = str(run_dir / "last.safetensors")   # (the shipped teacher's weights are read too)
    assert last not in read
    assert main(["distill", "--resume", str(run_dir), "--epochs", "4"]) == 0
    assert read.count(last) == 1


def test_a_damaged_metrics_line_stops_a_resume_before_anything_is_written(run_dir, capsys):
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"stage": "main", "epo\n')
    before = (run_dir / "config.yaml").read_text()
    assert "metrics.jsonl, line 5 is damaged" in error(capsys, ["distill", "--resume", str(run_dir), "--epochs", "4"])
    assert (run_dir / "config.yaml").read_text() == before


def test_lr_and_optimizer_reach_both_stages_unless_stage_1_is_set(capsys, fashion_dir):
    assert main(["distill", *BASE, "--lr", "0.01", "--optimizer", "sgd", "--dry-run"]) == 0
    stage1, stage2 = [line for line in capsys.readouterr().out.splitlines() if line.startswith("stage ")]
    assert stage1.endswith("sgd, lr 0.01, cosine schedule") and stage2.endswith("sgd, lr 0.01, cosine schedule")
    assert main(["distill", *BASE, "--lr", "0.01", "--set", "hint_stage.optim.lr=0.002", "--dry-run"]) == 0
    stage1, stage2 = [line for line in capsys.readouterr().out.splitlines() if line.startswith("stage ")]
    assert "adam, lr 0.002," in stage1 and "adam, lr 0.01," in stage2


def test_sigterm_stops_a_run_like_ctrl_c_with_the_resume_line(tmp_path, fashion_dir):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "fitnets", "distill", *BASE, "--epochs", "30", "--hint-epochs", "1",
                             "--out", str(tmp_path), "--name", "term"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "term" / "last.safetensors").exists():
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before SIGTERM: nothing was tested"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-1500:]
    assert f"Continue with: fitnets distill --resume {tmp_path / 'term'}" in err
