"""`torchrun` with 2 processes (gloo, CPU) follows the same trajectory as 1 process with the same global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ARGS = ["distill", "--method", "fitnet", "--epochs", "2", "--hint-epochs", "1", "--train-size", "1000",
        "--val-size", "300", "--batch-size", "100", "--set", "data.test_size=500", "--set", "log_every=5",
        "--no-progress", "--device", "cpu",
        # SGD, unlike Adam, is sensitive to the gradient's scale: a wrong average over ranks would show.
        "--optimizer", "sgd", "--lr", "0.1", "--set", "hint_stage.optim.name=sgd", "--set", "hint_stage.optim.lr=1e-5"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one(tmp_path, fashion_dir):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-m", "fitnets", *ARGS, "--out", str(tmp_path), "--name", "one"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                            f"--master_port={free_port()}", "-m", "fitnets", *ARGS, "--out", str(tmp_path),
                            "--name", "two"], capture_output=True, text=True, env=env, timeout=600)
    assert multi.returncode == 0, multi.stderr[-3000:]
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [(r["stage"], r["epoch"]) for r in one] == [(r["stage"], r["epoch"]) for r in two] == \
        [("hint", 1), ("main", 1), ("main", 2)]
    for a, b in zip(one, two):
        # Losses, not accuracies: float-order differences can flip a near-tie argmax.
        for key in ("loss", "hint_loss", "task_loss", "kd_loss", "val_hint_loss", "val_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=2e-4), (a["stage"], a["epoch"], key)
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["processes"] == 2
    assert results["test_loss"] == pytest.approx(
        json.loads((tmp_path / "one" / "results.json").read_text())["test_loss"], rel=2e-4)
    assert not (tmp_path / "two" / "metrics.jsonl").read_text().count("\n") > len(one)  # rank 0 alone writes


def test_resume_under_torchrun(tmp_path, fashion_dir):
    """A 2-process run stopped after its first epoch and resumed under torchrun ends exactly like an
    uninterrupted 2-process run."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = list(ARGS)
    args[args.index("--method") + 1] = "kd"
    args += ["--set", "optim.schedule=constant", "--set", "kd.decay_epochs=2"]  # independent of --epochs

    def torchrun(*extra):
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                               f"--master_port={free_port()}", "-m", "fitnets", *extra],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]

    torchrun(*args, "--out", str(tmp_path), "--name", "whole")
    torchrun(*args, "--epochs", "1", "--out", str(tmp_path), "--name", "cut")
    (tmp_path / "cut" / "results.json").unlink()  # as if the run had stopped after epoch 1
    torchrun("distill", "--resume", str(tmp_path / "cut"), "--epochs", "2", "--no-progress")
    a, b = metrics(tmp_path / "whole"), metrics(tmp_path / "cut")
    assert [r["epoch"] for r in b] == [1, 2]
    for x, y in zip(a, b):
        assert y["loss"] == x["loss"] and y["val_loss"] == x["val_loss"]


def test_ranks_fill_and_share_one_store(tmp_path, fashion_dir):
    """Under torchrun each rank fills the store slots of its share; a second 2-process run (same seed, so the
    same views) reads every one of them — and gets the first run's losses exactly."""
    env = dict(os.environ, OMP_NUM_THREADS="1", FITNETS_CACHE=str(tmp_path / "cache"))
    args = list(ARGS)
    args[args.index("--method") + 1] = "kd"
    args += ["--set", "data.pad=1", "--set", "data.flip=true"]
    for name in ("first", "second"):
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                               f"--master_port={free_port()}", "-m", "fitnets", *args, "--out", str(tmp_path),
                               "--name", name], capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = metrics(tmp_path / "first"), metrics(tmp_path / "second")
    assert first[0]["store_hit_rate"] == 0 and [r["store_hit_rate"] for r in second] == [1.0, 1.0]
    assert [r["loss"] for r in first] == [r["loss"] for r in second]
    (store,) = (tmp_path / "cache" / "stores").iterdir()  # one store, written by both ranks


def test_store_build_splits_the_views_across_ranks(tmp_path, fashion_dir):
    from fitnets.training.store import list_stores

    env = dict(os.environ, OMP_NUM_THREADS="1", FITNETS_CACHE=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={free_port()}", "-m", "fitnets", "store", "build", "--method", "kd",
                           "--set", "data.pad=1", "--set", "data.flip=true", "--train-size", "200", "--val-size",
                           "100", "--device", "cpu", "--no-progress"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3,600 of 3,600 slots filled (1,800 now by rank 0)" in proc.stdout  # 18 views: 9 per rank
    (info,) = list_stores(tmp_path)
    assert info.filled == info.slots == 200 * 18


STALL = """
import sys, time
import fitnets.training.engine as engine
from fitnets.tools.cli import main
from fitnets.training import distributed

real = engine.train_one_epoch
def stalls(*a, **k):
    if distributed.current().rank == 1:
        time.sleep(60)  # alive, but never reaches the end of its epoch
    return real(*a, **k)
engine.train_one_epoch = stalls
sys.exit(main(sys.argv[1:]))
"""

STALL_READING = """
import sys, time
import fitnets.training.engine as engine
from fitnets.tools.cli import main
from fitnets.training import distributed

real = engine.batches
def batches(*a, **k):
    for i, batch in enumerate(real(*a, **k)):
        if i == 1 and distributed.current().rank == 1:
            time.sleep(60)  # alive, but stuck reading its second batch while rank 0 waits in the step
        yield batch
engine.batches = batches
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("code, named", [(STALL, "stalled: rank 1 (nothing yet)"),
                                         (STALL_READING, "stalled: rank 1 (stage main, epoch 1, step 1)")])
def test_a_stalled_rank_stops_the_run_and_is_named(tmp_path, fashion_dir, code, named):
    script = tmp_path / "stall.py"
    script.write_text(code)
    env = dict(os.environ, OMP_NUM_THREADS="1", FITNETS_DIST_TIMEOUT="5")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={free_port()}", str(script), "train", "--epochs", "1", "--train-size",
                           "200", "--val-size", "100", "--device", "cpu", "--no-progress", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    line = next(line for line in proc.stderr.splitlines() if line.startswith("error: rank 0"))
    assert "timed out after 5 s" in line and named in line, line


@pytest.mark.parametrize("text", [
    "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Timed out waiting 5000ms for recv operation to complete",
    "[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Application timeout caused pair closure",
])
def test_gloos_timeouts_are_stalls_naming_the_rank_behind(monkeypatch, text):
    """A rank stopped by SIGSTOP mid-collective surfaces on the others as either of gloo's texts."""
    from datetime import timedelta

    import torch.distributed as dist

    from fitnets.training import distributed

    store = dist.HashStore()
    store.set("fitnets/progress/0", "stage main, epoch 2")
    store.set("fitnets/progress/1", "stage main, epoch 1")
    store.set_timeout(timedelta(seconds=1))
    monkeypatch.setattr(distributed, "current", lambda: distributed.DistInfo(0, 3))  # rank 2 never reported
    monkeypatch.setattr(distributed, "_store", lambda: store)
    error = distributed.stall_error(RuntimeError(text), "stage main, epoch 2")
    assert error is not None, text
    assert "stalled: rank 1 (stage main, epoch 1), rank 2 (nothing yet)" in str(error)
    assert distributed.stall_error(RuntimeError("CUDA error: an illegal memory access"), "x") is None


def test_a_stall_inside_an_epoch_every_rank_reached_says_so(monkeypatch):
    from datetime import timedelta

    import torch.distributed as dist

    from fitnets.training import distributed

    store = dist.HashStore()
    for rank in (0, 1):
        store.set(f"fitnets/progress/{rank}", "stage main, epoch 1")
    store.set_timeout(timedelta(seconds=1))
    monkeypatch.setattr(distributed, "current", lambda: distributed.DistInfo(0, 2))
    monkeypatch.setattr(distributed, "_store", lambda: store)
    error = str(distributed.stall_error(RuntimeError("Timed out waiting 5000ms for recv"), "stage main, epoch 1"))
    assert "no progress reports" not in error and "every rank reached stage main, epoch 1" in error, error
