"""Fault injection: kill -9 anywhere then resume gives the uninterrupted student; a full disk keeps the last
checkpoint and says so in one line; every badly typed value of every config field, every damaged data or
weights file, every model/data mismatch is one line — never a traceback."""

import dataclasses
import gzip
import json
import math
import signal
import subprocess
import sys
import typing

import numpy as np
import pytest
import torch

from fitnets import FitNet, create_model, kd_loss
from fitnets.checkpoint import load_checkpoint, load_weights, save_checkpoint
from fitnets.data import load_dataset
from fitnets.errors import FitNetsError
from fitnets.tools.cli import main
from fitnets.training.config import RunConfig

SMALL = ["--train-size", "600", "--val-size", "200", "--set", "data.test_size=300", "--no-progress"]


def one_line_error(capsys, argv, *needles, after_logs=False):
    """``fitnets ARGV`` exits 2 with one ``error:`` line (after the run's own log lines, when it got that far)."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err[-1500:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err, err
    assert after_logs or err.count("\n") == 1, err
    for needle in needles:
        assert needle in last, err
    return last


# ---------------------------------------------------------------- kill -9, then resume

ARGS = ["distill", "--method", "fitnet", "--epochs", "2", "--hint-epochs", "2", "--train-size", "800", "--val-size",
        "200", "--set", "data.test_size=200", "--no-progress"]
STEPS = math.ceil(800 / RunConfig().data.batch_size)  # training steps per epoch

# `python -c KILLER POINT N ARGS...` runs `fitnets ARGS...` and SIGKILLs itself right after the N-th call that
# POINT names returns: at a known place, so each case interrupts the run where it is meant to, never too early
# (before any checkpoint) or too late (after the run ended), whatever the machine's speed.
KILLER = """
import os, signal, sys
import fitnets.checkpoint as checkpoint
from fitnets.training import engine
from fitnets.tools.cli import main

point, n, calls = sys.argv[1], int(sys.argv[2]), [0]


def kill_after(owner, name, counts=lambda *args: True, then=lambda *args: None):
    real = getattr(owner, name)

    def hooked(*args, **kwargs):
        out = real(*args, **kwargs)
        if counts(*args):
            calls[0] += 1
            if calls[0] == n:
                then(*args)
                os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(owner, name, hooked)


def torn(tensors, filename):  # as if killed mid-write: the file being written is cut in half
    os.truncate(filename, os.path.getsize(filename) // 2)


if point == "step":    # the N-th training step of the run has just finished: mid-epoch
    kill_after(engine, "train_step")
elif point == "row":   # the N-th epoch's metrics row is written, its checkpoint not yet
    kill_after(engine.RunContext, "write_metrics")
elif point == "write":  # the N-th last.safetensors is being written
    kill_after(checkpoint, "save_file", lambda tensors, filename: "last.safetensors" in filename, torn)
sys.exit(main(sys.argv[3:]))
"""

# (where it is killed, N, the checkpoint it resumes from: (stage, epochs done), metric rows on disk at the kill)
KILLS = [("write", 2, ("hint", 1), 2),            # writing the hint stage's second checkpoint: the first is kept
         ("row", 3, ("hint", 2), 3),              # between the main stage's first row and its checkpoint
         ("step", 3 * STEPS + 3, ("main", 1), 3)]  # mid-way through the last epoch


@pytest.mark.slow
def test_kill_9_anywhere_then_resume_gives_the_uninterrupted_student(tmp_path, fashion_dir):
    whole = subprocess.run([sys.executable, "-m", "fitnets", *ARGS, "--out", str(tmp_path), "--name", "whole"],
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-1500:]
    reference, _ = load_checkpoint(tmp_path / "whole" / "student.safetensors")
    resumed = 0
    for point, n, (stage, done), rows in KILLS:
        name, case = f"killed-{point}", f"kill after {point} {n}"
        folder = tmp_path / name
        killed = subprocess.run([sys.executable, "-c", KILLER, point, str(n), *ARGS, "--out", str(tmp_path),
                                 "--name", name], capture_output=True, text=True)
        assert killed.returncode == -signal.SIGKILL, f"{case}: not killed mid-run\n{killed.stderr[-1500:]}"
        assert not (folder / "results.json").exists() and not (folder / "student.safetensors").exists(), case
        _, meta = load_checkpoint(folder / "last.safetensors")   # intact, and the one the case expects
        assert (meta["stage"], meta["epoch"] + 1) == (stage, done), case
        assert len((folder / "metrics.jsonl").read_text().splitlines()) == rows, case
        again = subprocess.run([sys.executable, "-m", "fitnets", "distill", "--resume", str(folder), "--no-progress"],
                               capture_output=True, text=True)
        assert again.returncode == 0, f"{case}: {again.stderr[-1500:]}"
        assert f"resuming stage {stage} after epoch {done}" in again.stderr, f"{case}: {again.stderr[-1500:]}"
        student, _ = load_checkpoint(folder / "student.safetensors")
        assert student.keys() == reference.keys(), case
        assert all(torch.equal(student[k], reference[k]) for k in reference), f"{case}: the student changed"
        epochs = [(r["stage"], r["epoch"]) for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())]
        assert epochs == [("hint", 1), ("hint", 2), ("main", 1), ("main", 2)], case  # none lost, none twice
        resumed += 1
    assert resumed == len(KILLS) == 3  # every case was killed mid-run and resumed from a checkpoint


# ---------------------------------------------------------------- a full disk

def test_a_full_disk_keeps_the_last_checkpoint_and_is_one_line(tmp_path, monkeypatch, capsys, fashion_dir):
    import fitnets.checkpoint as checkpoint

    real, writes = checkpoint.save_file, {"n": 0}

    def fills_up(tensors, filename, metadata=None):
        writes["n"] += 1
        if writes["n"] > 2:  # epoch 1's best and last are written; then the disk is full
            with open(filename, "wb") as f:
                f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", fills_up)
    one_line_error(capsys, ["train", "--epochs", "3", "--out", str(tmp_path), "--name", "full", *SMALL],
                   "No space left on device", "the previous checkpoint is intact",
                   f"--resume {tmp_path / 'full'}", after_logs=True)
    tensors, meta = load_checkpoint(tmp_path / "full" / "last.safetensors")
    assert meta["epoch"] == 0 and tensors
    assert not list((tmp_path / "full").glob("*.tmp"))


def test_a_full_disk_at_the_first_checkpoint_says_start_again_as_the_resume_does(tmp_path, monkeypatch, capsys,
                                                                                 fashion_dir):
    """No epoch saved: the error must not advise a --resume that would then say "nothing to resume" (issue 27)."""
    import fitnets.checkpoint as checkpoint

    def full(tensors, filename, metadata=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    message = one_line_error(capsys, ["train", "--epochs", "2", "--out", str(tmp_path), "--name", "first", *SMALL],
                             "No space left on device", "start the run again", after_logs=True)
    assert "--resume" not in message
    monkeypatch.undo()
    one_line_error(capsys, ["train", "--resume", str(tmp_path / "first")], "nothing to resume", "start the run again")


# ---------------------------------------------------------------- every config field, badly typed

def config_fields(cls=RunConfig, prefix=""):
    for f in dataclasses.fields(cls):
        kind = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(kind):
            yield from config_fields(kind, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, kind


def bad_values(kind):
    args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
    base = typing.get_origin(args[0]) or args[0]
    return {str: ["[1, 2]"], int: ["abc", "1.5", "[3]"], float: ["abc", "[0.1]"], bool: ["maybe", "3"],
            list: ["abc", "7"], dict: ["abc", "[1]"]}[base]


FIELDS = list(config_fields())


def test_every_config_field_is_covered():
    assert len(FIELDS) > 50 and {"optim.lr", "hint_stage.optim.max_norm", "data.image_size", "model_args"} <= dict(FIELDS).keys()


@pytest.mark.parametrize("key,kind", FIELDS, ids=[k for k, _ in FIELDS])
def test_every_badly_typed_config_value_is_one_line(key, kind, capsys):
    for value in bad_values(kind):
        one_line_error(capsys, ["distill", "--set", f"{key}={value}", "--dry-run"], key)


@pytest.mark.parametrize("key,value", [("method", "nope"), ("optim.name", "adamw"), ("optim.schedule", "linear"),
                                       ("data.preprocess", "zca"), ("keep", "first"), ("teacher_dtype", "fp16"),
                                       ("data.name", "imagenet"), ("student", "resnet21"), ("device", "tpu"),
                                       ("hint_stage.regressor_activation", "swishy")])
def test_every_bad_choice_is_one_line(key, value, capsys, fashion_dir):
    one_line_error(capsys, ["distill", "--set", f"{key}={value}", "--dry-run", *SMALL])


# ---------------------------------------------------------------- damaged files, mismatched models

def damaged_idx(root):
    from fitnets.data.idx import write_idx

    root.mkdir()
    for stem, n in (("train-images-idx3-ubyte", (20, 28, 28)), ("train-labels-idx1-ubyte", (20,)),
                    ("t10k-images-idx3-ubyte", (5, 28, 28)), ("t10k-labels-idx1-ubyte", (5,))):
        write_idx(root / (stem + ".gz"), np.zeros(n, dtype=np.uint8))
    good = (root / "t10k-images-idx3-ubyte.gz").read_bytes()
    body = bytearray(good)
    body[30:60] = bytes(30)  # damaged inside the deflate stream (a zlib error, not a bad header)
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(bytes(body))
    return ("mnist", "test")


def damaged_cifar(root):
    from fitnets.data.cifar import write_batch

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_batch(folder / f, np.zeros((2, 3, 32, 32), dtype=np.uint8), np.zeros(2, dtype=np.int64))
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes()[:100])
    return ("cifar10", "test")


def damaged_svhn(root):
    root.mkdir()
    (root / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    return ("svhn", "test")


def damaged_folder(root):
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        (root / split / "a" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return ("folder", "test")


@pytest.mark.parametrize("make", [damaged_idx, damaged_cifar, damaged_svhn, damaged_folder])
def test_a_damaged_data_file_is_one_line(make, tmp_path, monkeypatch):
    if make in (damaged_svhn,):
        pytest.importorskip("scipy")
    if make in (damaged_folder,):
        pytest.importorskip("PIL")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    name, split = make(tmp_path / "data")
    with pytest.raises(FitNetsError) as info:
        load_dataset(name, split, tmp_path / "data")
    assert "\n" not in str(info.value)


def test_damaged_and_foreign_weights_files(tmp_path):
    model = create_model("paper-mnist-fitnet")
    torch.save(model.state_dict(), tmp_path / "plain.pt")        # a valid PyTorch state_dict is read, not refused
    assert all(torch.equal(a, b) for a, b in zip(load_weights(create_model("paper-mnist-fitnet"), tmp_path / "plain.pt")
                                                 .state_dict().values(), model.state_dict().values()))
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "wrapped.pth")  # a training-loop wrapper
    fresh = create_model("paper-mnist-fitnet")
    assert not torch.equal(fresh.classifier.weight, model.classifier.weight)  # another init: a load shows
    loaded = load_weights(fresh, tmp_path / "wrapped.pth").state_dict()     # its state_dict is taken out, and read
    assert loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(FitNetsError, match="holds a list, not weights"):
        load_weights(model, tmp_path / "list.pt")
    save_checkpoint(tmp_path / "w.safetensors", model.state_dict(), {})
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:300])
    (tmp_path / "noise.pt").write_bytes(bytes(range(256)) * 4)
    for bad in ("cut.safetensors", "noise.pt"):
        with pytest.raises(FitNetsError, match="corrupt or truncated") as info:
            load_weights(model, tmp_path / bad)
        assert "\n" not in str(info.value)


def test_models_that_do_not_fit_the_data_or_each_other(capsys, tmp_path, fashion_dir):
    # a teacher with other classes: found at the start (the dry run), not at the first KD step after stage 1
    one_line_error(capsys, ["distill", "--method", "kd", "--set", "teacher_args={num_classes: 7}",
                            "--teacher", f"paper-mnist-fitnet:{save_student(tmp_path, num_classes=7)}", "--dry-run",
                            *SMALL], "7 outputs", "10")
    # a student that cannot take the data's images (3-channel 32×32 net on 1-channel 28×28 images)
    one_line_error(capsys, ["train", "--student", "resnet20", "--dry-run", *SMALL], "cannot run on an input of shape")
    one_line_error(capsys, ["bench", "step", "--batch-size", "0"], "--batch-size")
    one_line_error(capsys, ["bench", "speed", "--repeats", "0"], "--repeats")


def save_student(tmp_path, **kwargs):
    path = tmp_path / "teacher.safetensors"
    save_checkpoint(path, create_model("paper-mnist-fitnet", **kwargs).state_dict(), {})
    return path


def test_python_api_mistakes_are_one_line():
    torch.manual_seed(0)
    fitnet = FitNet(create_model("paper-mnist-teacher"), create_model("paper-mnist-fitnet"), "conv2", "conv4",
                    torch.zeros(1, 1, 28, 28))
    with pytest.raises(FitNetsError, match="add one with x.unsqueeze"):
        fitnet.hint_loss(torch.zeros(1, 28, 28))                   # unbatched: channels would pass as the batch
    with pytest.raises(FitNetsError, match="must be a torch.Tensor batch, got a list"):
        fitnet.hint_loss([[0.0]])
    logits, labels = torch.zeros(4, 10), torch.zeros(4, dtype=torch.long)
    with pytest.raises(FitNetsError, match="same number of classes"):
        kd_loss(logits, torch.zeros(4, 7), labels, 1.0)
    with pytest.raises(FitNetsError, match="student_logits must be a torch.Tensor, got a list"):
        kd_loss([[0.0]], None, labels, 0.0)
    with pytest.raises(FitNetsError, match="labels must be 4 class indices"):
        kd_loss(logits, None, torch.zeros(4), 0.0)
