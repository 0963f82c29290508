"""Users' own models on the command line: `package.module:factory[:WEIGHTS]` for --student, --teacher and the
commands that take a model, with one-line errors for a bad path, a factory that raises, a non-module."""

import json
import sys
import textwrap

import pytest

from fitnets.tools.cli import main

SMALL = ["--epochs", "1", "--train-size", "300", "--val-size", "100", "--set", "data.test_size=200", "--no-progress"]

MODULE = '''
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Output:
    logits: torch.Tensor


class Small(nn.Module):
    def __init__(self, num_classes=10, width=8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(8 * width, num_classes)

    def forward(self, x):
        return Output(self.head(self.body(x).flatten(1)))


def small(num_classes=10, width=8):
    return Small(num_classes, width)


def broken(**kwargs):
    raise ValueError("no such size")


def not_a_model(**kwargs):
    return "a string"
'''


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    package = tmp_path / "pkg" / "user_nets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    yield "user_nets.models"
    for name in [m for m in sys.modules if m.startswith("user_nets")]:
        del sys.modules[name]


def test_train_distill_evaluate_layers_export_bench_with_a_factory(tmp_path, user_package, capsys, fashion_dir):
    out = ["--out", str(tmp_path / "runs")]
    assert main(["train", "--student", f"{user_package}:small", "--set", "model_args.width=16", *SMALL, *out,
                 "--name", "teacher"]) == 0
    teacher = f"{user_package}:small:{tmp_path / 'runs' / 'teacher'}"
    assert main(["distill", "--method", "fitnet", "--teacher", teacher, "--student", f"{user_package}:small",
                 "--hint", "body.3", "--guided", "body.3", "--hint-epochs", "1", *SMALL, *out, "--name", "fit"]) == 0
    assert "fitnet user_nets.models:small seed 0: test accuracy" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "runs" / "fit"), "--teacher", teacher]) == 0
    assert "top-1 agreement" in capsys.readouterr().out
    assert main(["layers", f"{user_package}:small", "--input-shape", "1,28,28"]) == 0
    assert "body.3" in capsys.readouterr().out
    for spec in (str(tmp_path / "runs" / "teacher"), teacher):  # RUN_DIR, factory:PATH: its width, its data's shape
        assert main(["layers", spec]) == 0
        assert "(16, 28, 28)" in next(line for line in capsys.readouterr().out.splitlines() if line.startswith("body.0 "))
    assert main(["export", str(tmp_path / "runs" / "fit"), "--out", str(tmp_path / "exported"), "--no-onnx"]) == 0
    from fitnets.tools.export import load_exported

    assert load_exported(tmp_path / "exported").head.in_features == 64  # width 8: 16 channels × 2 × 2
    capsys.readouterr()
    assert main(["bench", "step", "--teacher", f"{user_package}:small", "--student", f"{user_package}:small",
                 "--hint", "body.3", "--guided", "body.3", "--input-shape", "1,28,28", "--steps", "1", "--warmup", "0",
                 "--rounds", "1", "--no-compile", "--batch-size", "8", "--json"]) == 0
    bench = json.loads(capsys.readouterr().out)   # every method's step timed on the factory's models
    assert bench["teacher"] == bench["student"] == f"{user_package}:small" and bench["batch_size"] == 8
    assert {"CE step", "KD step, teacher logits cached", "FitNet stage 1, cut, hints cached"} <= {
        r["step"] for r in bench["rows"]}
    assert all(len(r["rates"]) == 1 and r["images_per_s"] > 0 for r in bench["rows"])


@pytest.mark.parametrize("model,needle", [
    ("user_nets.models:broken", "user_nets.models:broken() raised ValueError: no such size"),
    ("user_nets.models:not_a_model", "returned a str, not an nn.Module"),
    ("user_nets.models:missing", "module 'user_nets.models' has no callable 'missing'"),
    ("user_nets.nothing:small", "cannot import 'user_nets.nothing'"),
])
def test_bad_factories_are_one_line(user_package, capsys, model, needle):
    assert main(["train", "--student", model, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


def test_a_factory_without_a_known_input_shape_asks_for_one(user_package, capsys):
    assert main(["layers", f"{user_package}:small"]) == 2
    assert "give --input-shape C,H,W" in capsys.readouterr().err
