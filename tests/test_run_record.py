"""Every run folder stands on its own (``fitnets.training.record``): a run made from ``nn.Module`` objects
records what ``report`` and ``export`` need; the shape a run took from its data is recorded; an export records
its evaluation view and ``load_exported`` applies it; ``fitnets.export`` / ``fitnets.evaluate`` take objects."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import fitnets
from conftest import user_module
from fitnets.core.profile import count_macs
from fitnets.tools.cli import main
from fitnets.tools.export import load_exported

USER = '''
import torch
from torch import nn

class Images(torch.utils.data.Dataset):
    """uint8 images 1 × 10 × 10 in 3 classes, the class drawn as a bright band."""
    def __init__(self, n=60, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 3
        self.x = torch.randint(0, 60, (n, 1, 10, 10), generator=g, dtype=torch.uint8)
        for i, c in enumerate(self.y.tolist()):
            self.x[i, 0, 3 * c:3 * c + 3] = 250
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):
        return self.x[i], int(self.y[i])

class Net(nn.Module):   # a user's class: nothing can build it by name
    def __init__(self, width=4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * 100, 3))
    def forward(self, x):
        return self.head(self.features(x))

def splits():
    return {"train": Images(), "test": Images(30, seed=1)}

def student():
    torch.manual_seed(0)
    return Net(4)
'''


@pytest.fixture
def user(tmp_path, monkeypatch):
    return user_module(tmp_path, monkeypatch, "recdata", USER)


def _distill(user, tmp_path, name, seed=0, **kw):
    torch.manual_seed(1)
    teacher, student = user.Net(8), user.Net(4)
    results = fitnets.distill(teacher, student, user.Images(), test=user.Images(30, seed=1), hint="features.1",
                              guided="features.1", out=str(tmp_path), name=name, epochs=1, hint_epochs=1,
                              val_size=12, batch_size=12, seed=seed, progress=False,
                              overrides={"data.workers": 0}, **kw)
    return teacher, student, results


def test_a_run_from_objects_records_what_report_needs(user, tmp_path, capsys, caplog):
    teacher, student, results = _distill(user, tmp_path, "objects")
    weak = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("weak hint fit"))
    named = "rank(layers(teacher, x), layers(student, x))"   # the warning names what the README documents
    assert named in weak and named in (Path(__file__).parents[1] / "README.md").read_text()
    saved = json.loads((tmp_path / "objects" / "results.json").read_text())
    assert saved["test_acc"] == results["test_acc"] and saved["parameters"] == 1243   # the existing keys stay
    assert saved["input_shape"] == [1, 10, 10] and saved["macs"] == count_macs(student, (1, 10, 10))
    assert saved["teacher_parameters"] == sum(p.numel() for p in teacher.parameters())
    assert saved["teacher_macs"] == count_macs(teacher, (1, 10, 10))
    assert saved["examples"] == {"train": 48, "val": 12, "test": 30}
    assert yaml.safe_load((tmp_path / "objects" / "config.yaml").read_text())["input_shape"] == [1, 10, 10]
    assert main(["report", str(tmp_path / "objects"), "--out", str(tmp_path / "rep"), "--no-figures"]) == 0
    table = (tmp_path / "rep" / "report.md").read_text()
    row = next(line for line in table.splitlines() if "python:recdata.Net" in line)
    compression = saved["teacher_parameters"] / saved["parameters"]
    timed = saved["speed"]   # a run on objects times them itself: report cannot build them again
    assert timed["device"] == "cpu" and timed["student_images_per_s"] > 0 and timed["teacher_images_per_s"] > 0
    speedup = timed["student_images_per_s"] / timed["teacher_images_per_s"]
    cells = f"| {saved['parameters']:,} | {saved['macs'] / 1e6:.1f}M | {compression:.1f}× | {speedup:.2f}× (cpu) |"
    assert cells in row, row
    capsys.readouterr()
    assert main(["export", str(tmp_path / "objects"), "--out", str(tmp_path / "exp")]) == 2   # said, with the way
    assert "then fitnets.export(model, DIR, run=RUN_DIR)" in capsys.readouterr().err


def test_report_counts_seeds_not_folders(user, tmp_path, capsys, caplog):
    _distill(user, tmp_path, "a")
    _distill(user, tmp_path, "b")   # a second folder of the same seed
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "rep"),
                 "--no-figures", "--no-speed"]) == 0
    row = next(line for line in (tmp_path / "rep" / "report.md").read_text().splitlines() if "python:" in line)
    assert "| 1 (2 runs) |" in row, row
    assert "hold the same seed 0" in capsys.readouterr().err


def test_a_factory_run_records_the_shape_it_took_from_the_data_and_exports(user, tmp_path, capsys):
    argv = ["train", "--student", "recdata:student", "--data", "recdata:splits", "--epochs", "1", "--val-size",
            "12", "--out", str(tmp_path), "--name", "f", "--no-progress", "--set", "data.workers=0"]
    assert main(argv) == 0
    assert yaml.safe_load((tmp_path / "f" / "config.yaml").read_text())["input_shape"] == [1, 10, 10]
    assert main(["export", str(tmp_path / "f"), "--out", str(tmp_path / "exp"), "--no-onnx"]) == 0
    info = json.loads((tmp_path / "exp" / "model.json").read_text())
    assert info["input_shape"] == [1, 10, 10] and info["eval_view"]["centre_crop"] is None
    argv[-3] = "f2"   # the resume of a run whose shape came from its data keeps the recorded one
    assert main([*argv[:-5], "--epochs", "2", "--resume", str(tmp_path / "f"), "--no-progress", "--set",
                 "data.workers=0"]) == 0, capsys.readouterr().err


def test_an_export_records_its_evaluation_view_and_load_exported_applies_it(user, tmp_path):
    overrides = {"data.workers": 0, "data.augment": "random-resized-crop", "data.image_size": [8, 8],
                 "data.mean": [0.2], "data.std": [0.3]}
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    fitnets.train(student, user.Images(), test=user.Images(30, seed=1), out=str(tmp_path), name="crop", epochs=1,
                  val_size=12, batch_size=12, progress=False, overrides=overrides)
    info = fitnets.export(student, tmp_path / "exp", run=tmp_path / "crop", onnx=False)
    assert info["eval_view"] == {"input_shape": [1, 8, 8], "centre_crop": 0.875, "pixels": "uint8 / 255",
                                 "mean": [0.2], "std": [0.3]}
    with pytest.raises(fitnets.FitNetsError, match="give load_exported an instance"):
        load_exported(tmp_path / "exp")
    viewed = load_exported(tmp_path / "exp", nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), view=True)
    raw = user.Images(30, seed=1).x
    from fitnets.data.augment import CentreCrop
    expected = student.eval()((CentreCrop((8, 8), 0.875)(raw) - 0.2) / 0.3)
    assert torch.allclose(viewed(raw), expected, atol=1e-6)
    # fitnets.evaluate on the object, through the run's view: the run's own test figure
    results = json.loads((tmp_path / "crop" / "results.json").read_text())
    got = fitnets.evaluate(student, user.Images(30, seed=1), run=tmp_path / "crop")
    assert got["acc"] == pytest.approx(results["test_acc"]) and got["loss"] == pytest.approx(results["test_loss"])


def test_resume_on_a_training_set_of_another_length_refuses(user, tmp_path):
    _distill(user, tmp_path, "r")
    with pytest.raises(fitnets.FitNetsError, match="the training set has 60 examples but the run in .* started "
                                                   "with 48"):
        torch.manual_seed(1)
        fitnets.distill(user.Net(8), user.Net(4), user.Images(72), test=user.Images(30, seed=1), hint="features.1",
                        guided="features.1", out=str(tmp_path), name="r", epochs=2, hint_epochs=1, val_size=12,
                        batch_size=12, resume=True, progress=False, overrides={"data.workers": 0})


def test_the_python_api_speaks_its_keywords_and_resumes_a_copied_folder_in_place(user, tmp_path):
    import shutil

    _distill(user, tmp_path, "a")
    with pytest.raises(fitnets.FitNetsError) as err:
        _distill(user, tmp_path, "a")
    assert "continue it with resume=True or choose another name=" in str(err.value) and "--" not in str(err.value)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    torch.manual_seed(1)
    results = fitnets.distill(user.Net(8), user.Net(4), user.Images(), test=user.Images(30, seed=1),
                              hint="features.1", guided="features.1", out=str(tmp_path), name="b", epochs=2,
                              hint_epochs=1, val_size=12, batch_size=12, resume=True, progress=False,
                              overrides={"data.workers": 0})
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows] == [("hint", 1), ("main", 1), ("main", 2)]
    assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["name"] == "b"
    assert results["test_acc"] == json.loads((tmp_path / "b" / "results.json").read_text())["test_acc"]


def test_an_older_run_without_its_input_shape_is_told_where_to_write_it(user, tmp_path, capsys):
    argv = ["train", "--student", "recdata:student", "--data", "recdata:splits", "--epochs", "1", "--val-size",
            "12", "--out", str(tmp_path), "--name", "old", "--no-progress", "--set", "data.workers=0"]
    assert main(argv) == 0
    run = tmp_path / "old"   # as a run made before runs recorded their shape
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "input_shape": None}))
    results = json.loads((run / "results.json").read_text())
    older = ("input_shape", "macs", "examples", "eval_view")
    (run / "results.json").write_text(json.dumps({k: v for k, v in results.items() if k not in older}))
    capsys.readouterr()
    for command in (["export", str(run), "--out", str(tmp_path / "e")],
                    ["report", str(run), "--out", str(tmp_path / "r"), "--no-figures"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "add input_shape: [C, H, W] to its config.yaml" in err and "--set" not in err, err
