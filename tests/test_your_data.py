"""Your models and your data in the whole engine: ``fitnets.distill`` on ``Dataset`` objects with random
transforms (torch's, Python's ``random``, NumPy's) read by DataLoader workers — reproducible to the bit, killed
and resumed, under torchrun — and ``--data package.module:factory``."""

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import fitnets
from fitnets.data.augment import Augmentation, ResizedCrop
from fitnets.data.datasets import DatasetSplit, item_seed
from fitnets.data.loader import batches
from fitnets.tools.cli import main

# The user's code, as it would sit in their own module: a dataset whose transform draws from all three random
# sources, and a teacher and a student (nn.Module objects).
USER_CODE = '''
import random, time
import numpy as np, torch
from torch import nn

class Noisy(torch.utils.data.Dataset):
    """Random transforms from torch, Python's random and NumPy; dict items when asked."""
    def __init__(self, n=240, source="all", dict_items=False, seed=0, delay=0.0, scale=0.1):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, 10, 10, generator=g)
        self.y = torch.randint(0, 4, (n,), generator=g)
        self.source, self.dict_items, self.delay, self.scale = source, dict_items, delay, scale
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):
        time.sleep(self.delay)
        x = self.x[i].clone()
        if self.source in ("all", "torch"):
            x = x + self.scale * torch.randn_like(x)
        if self.source in ("all", "random"):
            x = x.roll(random.randint(-2, 2), dims=-1)
        if self.source in ("all", "numpy"):
            x = x * float(np.random.uniform(0.8, 1.2))
        return {"pixel_values": x, "labels": int(self.y[i])} if self.dict_items else (x, self.y[i])

def teacher():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 12, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(12 * 100, 4))

def student():
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 100, 4))

def splits():
    return {"train": Noisy(dict_items=True), "test": Noisy(60, seed=1)}

def twelve():  # a factory that takes no arguments, with the wrong number of outputs
    return nn.Sequential(nn.Flatten(), nn.Linear(100, 12))

def run(out, name, resume=False, delay=0.0, scale=0.1, overrides=(), **flags):
    import fitnets
    return fitnets.distill(teacher(), student(), Noisy(delay=delay, scale=scale), test=Noisy(60, seed=1), hint="2",
                           guided="2", out=out, name=name, resume=resume, val_size=40, batch_size=40, progress=False,
                           overrides={"data.workers": 2, "log_every": 1, **dict(overrides)}, **flags)

if __name__ == "__main__":
    import sys
    run(sys.argv[1], sys.argv[2], resume=sys.argv[3] == "resume", delay=float(sys.argv[4]), epochs=4, hint_epochs=2)
'''


@pytest.fixture
def user(tmp_path, monkeypatch):
    (tmp_path / "userdata.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import userdata
    return importlib.reload(userdata)


def _read(split, epoch, aug=Augmentation()):
    return list(batches(split, 16, shuffle=True, seed=3, epoch=epoch, aug=aug))


@pytest.mark.parametrize("source", ["torch", "random", "numpy"])
def test_each_random_source_is_seeded_by_seed_epoch_and_index(user, source):
    data = user.Noisy(64, source=source)
    one, two = DatasetSplit(data, workers=0), DatasetSplit(data, workers=2)
    a, b, c = _read(one, 1), _read(two, 1), _read(one, 2)
    for (xa, ya, ka), (xb, yb, kb) in zip(a, b):       # the same draws with 0 or 2 worker processes
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ka, kb)
    assert not torch.equal(torch.cat([x for x, _, _ in a]), torch.cat([x for x, _, _ in c]))  # a new epoch redraws
    raw = data.x[torch.cat([k for _, _, k in a]) % len(data)]   # keys: epoch × n + index
    assert not torch.equal(torch.cat([x for x, _, _ in a]), raw)   # the transform did draw
    assert item_seed(0, 1, 5) != item_seed(0, 1, 6) != item_seed(1, 1, 5)


def test_reading_an_item_leaves_the_training_process_draws_alone(user):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _read(DatasetSplit(user.Noisy(32), workers=0), 0)
    assert torch.equal(torch.rand(3), expected)


def test_dict_and_tuple_items_and_the_engines_augmentation_per_item(user):
    pairs, dicts = DatasetSplit(user.Noisy(32)), DatasetSplit(user.Noisy(32, dict_items=True))
    assert pairs.num_classes == dicts.num_classes == int(user.Noisy(32).y.max()) + 1
    crop = ResizedCrop((6, 6), flip=True)
    for (xa, ya, _), (xb, yb, _) in zip(_read(pairs, 0, crop), _read(dicts, 0, crop)):
        assert xa.shape[1:] == (1, 6, 6) and torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(fitnets.FitNetsError, match="without 'image'"):
        _read(DatasetSplit(user.Noisy(8, dict_items=True), 4, keys=("image", "labels")), 0)


def test_distill_runs_the_engine_on_objects_and_datasets(user, tmp_path):
    results = user.run(str(tmp_path), "py", epochs=1, hint_epochs=1)
    run = tmp_path / "py"
    config = (run / "config.yaml").read_text()
    assert "student: python:userdata.student" not in config   # the class, not the factory that made it
    assert "student: python:torch.nn.modules.container.Sequential" in config
    assert json.loads((run / "results.json").read_text())["test_acc"] == results["test_acc"]
    assert [json.loads(line)["stage"] for line in (run / "metrics.jsonl").read_text().splitlines()] == ["hint", "main"]
    with pytest.raises(fitnets.FitNetsError, match="does not fit this run's models"):  # other objects: one line
        other = torch.nn.Sequential(torch.nn.Conv2d(1, 5, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.Conv2d(5, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                    torch.nn.Linear(600, 4))   # the same class, other shapes
        fitnets.distill(user.teacher(), other, user.Noisy(), test=user.Noisy(60, seed=1), hint="2", guided="2",
                        out=str(tmp_path), name="py", resume=True, val_size=40, batch_size=40, epochs=2,
                        progress=False, overrides={"data.workers": 2, "log_every": 1})
    with pytest.raises(fitnets.FitNetsError, match="unknown flag 'epoch'. Did you mean: epochs"):
        fitnets.distill(user.teacher(), user.student(), user.Noisy(), epoch=3)


@pytest.mark.parametrize("call, kwargs, needle", [
    ("distill", {"data": "cifar10"}, "cannot use data=: the data is the Dataset objects given"),
    ("distill", {"data_dir": "/data"}, "cannot use data_dir="),
    ("distill", {"download": True}, "cannot use download="),
    ("distill", {"overrides": {"data.name": "mnist"}}, "cannot use overrides={'data.name': ...}"),
    ("distill", {"val": "split", "val_size": 10}, "cannot use val_size=: val= is the validation split"),
    ("train", {"temperature": 5}, "fitnets.train() cannot use temperature=: it trains with cross-entropy alone"),
    ("train", {"hint": "x"}, "fitnets.train() cannot use hint="),
    ("train", {"method": "kd"}, "fitnets.train() cannot use method="),
    ("train", {"overrides": {"kd.temperature": 5}}, "cannot use overrides={'kd.temperature': ...}"),
])
def test_a_call_refuses_what_it_cannot_use(user, call, kwargs, needle):
    if kwargs.get("val") == "split":
        kwargs["val"] = user.Noisy(40)
    models = (user.teacher(), user.student()) if call == "distill" else (user.student(),)
    with pytest.raises(fitnets.FitNetsError) as error:
        getattr(fitnets, call)(*models, user.Noisy(), **kwargs)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_distill_leaves_the_callers_config_as_it_was(user, tmp_path):
    config = fitnets.load_config(None, [("data.val_size", 40), ("data.batch_size", 40), ("data.workers", 0)])
    before = copy.deepcopy(config)
    fitnets.distill(user.teacher(), user.student(), user.Noisy(120), test=user.Noisy(40, seed=1), method="kd",
                    config=config, epochs=1, out=str(tmp_path), name="kd", progress=False)
    assert config == before and config.method == "fitnet" and config.data.name == "fashion-mnist"
    assert "method: kd" in (tmp_path / "kd" / "config.yaml").read_text()


def test_kill_9_and_resume_give_the_uninterrupted_student(user, tmp_path):
    """FitNets' two stages on a Dataset with random transforms read by 2 workers: killed with SIGKILL in the
    middle of the run, then resumed, the student is bit-identical to an uninterrupted run's."""
    script = tmp_path / "userdata.py"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]))
    python = [sys.executable, str(script), str(tmp_path)]
    subprocess.run([*python, "whole", "fresh", "0"], check=True, env=env, timeout=300)
    victim = subprocess.Popen([*python, "killed", "fresh", "0.004"], env=env)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not metrics.is_file() or metrics.read_text().count("\n") < 3):
        time.sleep(0.05)
    assert victim.poll() is None, "the run ended before it could be killed: nothing was tested"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "student.safetensors").exists()
    subprocess.run([*python, "killed", "resume", "0"], check=True, env=env, timeout=300)
    whole = fitnets.checkpoint.read_weights(tmp_path / "whole" / "student.safetensors")
    resumed = fitnets.checkpoint.read_weights(tmp_path / "killed" / "student.safetensors")
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows] == [("hint", 1), ("hint", 2), *[("main", e) for e in range(1, 5)]]


@pytest.mark.parametrize("code, needle", [
    ("", "has no callable 'splits'"),
    ("def splits():\n    return [1, 2]", "returned a list; it must return a dict"),
    ("def splits():\n    return {'train': [], 'tests': []}", "without 'test'"),
    ("def splits():\n    raise ValueError('no files here')", "raised ValueError: no files here"),
    ("import not_a_module_at_all", "cannot import 'baddata'"),
])
def test_data_factory_mistakes_are_one_line(tmp_path, monkeypatch, capsys, code, needle):
    (tmp_path / "baddata.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("baddata", None)
    assert main(["distill", "--method", "ce", "--data", "baddata:splits", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err


def test_data_factory_from_the_command_line(user, tmp_path, capsys):
    argv = ["distill", "--method", "kd", "--data", "userdata:splits", "--teacher", "userdata:teacher",
            "--student", "userdata:student", "--epochs", "1", "--val-size", "40", "--out", str(tmp_path),
            "--no-progress", "--set", "data.workers=0"]
    assert main([*argv, "--teacher", f"userdata:teacher:{_teacher_weights(user, tmp_path)}"]) == 0
    run_dir = next(tmp_path.glob("kd-*"))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["dataset"] == "userdata:splits"
    capsys.readouterr()
    assert main(["evaluate", str(run_dir)]) == 0   # the factory's test split (60 images), read again by the run folder
    printed = capsys.readouterr().out
    assert f"test accuracy {results['test_acc']:.4f}, loss {results['test_loss']:.4f} (60 images)" in printed


def _teacher_weights(user, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "teacher.safetensors"
    save_file(user.teacher().state_dict(), str(path))
    return path


@pytest.mark.slow
def test_two_ranks_under_torchrun_follow_one(user, tmp_path):
    from test_distributed import free_port  # noqa: PLC0415 (a sibling test module)

    script = tmp_path / "ddp.py"
    script.write_text("import sys, userdata\nuserdata.run(sys.argv[1], sys.argv[2], epochs=2, hint_epochs=1, "
                      "device='cpu', optimizer='sgd', lr=0.1, overrides={'hint_stage.optim.lr': 1e-4})\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(tmp_path), os.path.dirname(__file__), *filter(None, [os.environ.get("PYTHONPATH")])]))
    one = subprocess.run([sys.executable, str(script), str(tmp_path), "one"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", str(script), str(tmp_path), "two"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    rows = [[json.loads(line) for line in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
            for n in ("one", "two")]
    assert [(r["stage"], r["epoch"]) for r in rows[0]] == [(r["stage"], r["epoch"]) for r in rows[1]]
    for a, b in zip(*rows):  # each rank read its share of every global batch: the same averaged losses
        for key in ("loss", "val_loss", "val_hint_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=2e-4), (a["stage"], key)
    assert json.loads((tmp_path / "two" / "results.json").read_text())["processes"] == 2


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_store_keeps_your_datasets_views_for_the_runs_of_one_seed(user, tmp_path, monkeypatch, caplog):
    """store.per_epoch: the first KD run fills a slot per (epoch, example); a second method under the same seed
    reads them all; the students equal those of runs with the teacher live."""
    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "cache"))
    on = {"store.per_epoch": True}
    first = user.run(str(tmp_path), "kd", method="kd", epochs=2, overrides=on)
    fitnet = user.run(str(tmp_path), "fitnet", epochs=2, hint_epochs=1, overrides=on)
    assert [r["store_hit_rate"] for r in _rows(tmp_path / "kd")] == [0.0, 0.0]
    assert [r.get("store_hit_rate") for r in _rows(tmp_path / "fitnet")] == [None, 1.0, 1.0]  # hint stage: no logits
    live = user.run(str(tmp_path), "kd-live", method="kd", epochs=2, overrides={"store.enabled": False})
    assert live["test_loss"] == pytest.approx(first["test_loss"], rel=1e-5)  # stored values: fp32, as computed
    fitnet_live = user.run(str(tmp_path), "fitnet-live", epochs=2, hint_epochs=1, overrides={"store.enabled": False})
    # the second method read the first one's values: its student is the live-teacher one, to the last bit
    kd_losses = [[r.get("kd_loss") for r in _rows(tmp_path / name)] for name in ("fitnet", "fitnet-live")]
    assert kd_losses[0] == kd_losses[1]
    assert fitnet["test_loss"] == fitnet_live["test_loss"] and "does not match" not in caplog.text


def test_a_changed_transform_under_the_same_name_drops_the_store(user, tmp_path, monkeypatch, caplog):
    """The store cannot hash a transform: a parameter changed under the same class name gives the same key; the
    audit recomputes stored slots, finds the mismatch before any is used, deletes the store and runs live."""
    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "cache"))
    on = {"store.per_epoch": True}
    user.run(str(tmp_path), "before", method="kd", epochs=2, overrides=on)
    caplog.clear()
    changed = user.run(str(tmp_path), "after", method="kd", epochs=2, scale=0.5, overrides=on)
    warnings = [r.getMessage() for r in caplog.records if "does not match this run's data" in r.getMessage()]
    assert len(warnings) == 1
    assert not any((tmp_path / "cache" / "stores").iterdir())
    live = user.run(str(tmp_path), "after-live", method="kd", epochs=2, scale=0.5, overrides={"store.enabled": False})
    assert changed["test_loss"] == live["test_loss"]   # nothing stale was ever used


def test_a_factory_with_the_wrong_number_of_outputs_is_told_how_to_fix_it(user, tmp_path, capsys):
    argv = ["distill", "--method", "ce", "--data", "userdata:splits", "--student", "userdata:twelve", "--val-size",
            "40", "--out", str(tmp_path), "--no-progress", "--set", "data.workers=0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "has 12 outputs" in err and "make userdata:twelve build 4 outputs" in err and "model_args.num" not in err


@pytest.mark.parametrize("per_epoch", [True, False])
def test_store_build_and_a_run_agree_on_a_user_dataset(user, tmp_path, monkeypatch, capsys, per_epoch):
    """One rule decides whether a run reads a store (issue 27: with store.per_epoch a run made one while `store
    build` said none was needed): the run's plan and `store build` say the same."""
    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "cache"))
    flags = ["--method", "kd", "--data", "userdata:splits", "--teacher",
             f"userdata:teacher:{_teacher_weights(user, tmp_path)}", "--student", "userdata:student", "--val-size",
             "40", "--no-progress", "--set", "data.workers=0", "--set", f"store.per_epoch={str(per_epoch).lower()}"]
    assert main(["distill", *flags, "--epochs", "1", "--out", str(tmp_path), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert ("store    teacher logits per (seed, epoch, example)" in plan) == per_epoch
    assert main(["store", "build", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "Traceback" not in err
    if per_epoch:
        assert "the runs that draw them fill it, not ahead of time" in err
    else:
        assert "this run reads no teacher-output store: your Dataset's views are drawn" in err
