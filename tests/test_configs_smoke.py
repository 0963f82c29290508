"""The shipped CIFAR experiment files run end to end: teacher config, then student configs that name the
teacher's run folder — on tiny CIFAR files written in the real format (the datasets can't be fetched here)."""

import json

import numpy as np
import pytest

from fitnets.tools.cli import main
from fitnets.data.cifar import write_batch

pytestmark = pytest.mark.slow

TINY = ["--set", "data.train_size=48", "--set", "data.val_size=16", "--set", "data.test_size=16",
        "--set", "data.batch_size=16", "--set", "data.eval_batch_size=16", "--no-progress"]


def fake_cifar(root, name, classes, n=64):
    rng = np.random.default_rng(0)
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10" else ["train", "test"]
    key = "labels" if name == "cifar10" else "fine_labels"
    for f in files:
        write_batch(folder / f, rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, classes, n),
                    label_key=key)


def run(capsys, *args):
    code = main(list(args))
    assert code == 0, capsys.readouterr().err[-1500:]


def test_cifar100_benchmark_configs(tmp_path, capsys, monkeypatch):
    fake_cifar(tmp_path / "data", "cifar100", 100)
    monkeypatch.chdir(tmp_path)  # the configs name teachers as runs/cifar100-<teacher>
    root = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs" / "cifar100"
    common = ["--data-dir", str(tmp_path / "data"), "--epochs", "1", *TINY]
    run(capsys, "run", str(root / "teacher-resnet56.yaml"), *common)
    for form in ("fitnet", "fitnet-onestage", "kd"):
        run(capsys, "run", str(root / f"resnet56-resnet20-{form}.yaml"), *common, "--hint-epochs", "1")
        run_dir = tmp_path / "runs" / f"cifar100-resnet56-resnet20-{form}"
        results = json.loads((run_dir / "results.json").read_text())
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        # random pixels teach nothing: check the method ran as configured, on the benchmark's 100 classes
        assert results["method"] == form and results["parameters"] == 278_324  # resnet20, 100 classes
        assert [r["stage"] for r in rows] == (["hint", "main"] if form == "fitnet" else ["main"])
        assert ("hint_mse" in rows[-1]) == (form == "fitnet-onestage") and ("kd_loss" in rows[-1]) == (form != "fitnet-onestage")
    paper = root.parent / "paper"  # the paper's CIFAR-100 run: a 100-class maxout teacher from its run folder
    run(capsys, "run", str(paper / "cifar100-teacher.yaml"), *common)
    run(capsys, "run", str(paper / "cifar100-fitnet4.yaml"), *common, "--hint-epochs", "1")
    assert (tmp_path / "runs" / "cifar100-fitnet4-fitnet" / "student.safetensors").is_file()


def test_paper_cifar10_configs_with_gcn_zca(tmp_path, capsys, monkeypatch):
    fake_cifar(tmp_path / "data", "cifar10", 10)
    monkeypatch.chdir(tmp_path)
    root = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs" / "paper"
    common = ["--data-dir", str(tmp_path / "data"), "--epochs", "1", *TINY]
    run(capsys, "run", str(root / "cifar10-teacher.yaml"), *common)
    run(capsys, "run", str(root / "cifar10-fitnet1.yaml"), *common, "--hint-epochs", "1")
    rows = [json.loads(line) for line in
            (tmp_path / "runs" / "cifar10-fitnet1-fitnet" / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["hint", "main"]


def test_the_demo_config_file_is_the_demos_fitnet_run():
    """configs/demo-fitnet.yaml restates the demo's quick FitNets run for `fitnets distill --config`: the two homes
    of that protocol must not drift apart (the folder, device and download settings aside)."""
    import argparse
    from pathlib import Path

    from fitnets.tools.commands.demo import QUICK, demo_config
    from fitnets.training.config import flatten, load_config, to_dict

    args = argparse.Namespace(download=True, data_dir=None, device="auto", fast=None)
    from fitnets.models.registry import model_spec

    demo = flatten(to_dict(demo_config("fitnet", 0, QUICK, args)))
    # the demo leaves the pair to the registry, which the file names
    demo["hint"] = demo["hint"] or model_spec(demo["teacher"]).hint
    demo["guided"] = demo["guided"] or model_spec(demo["student"]).guided
    path = Path(__file__).resolve().parents[1] / "configs" / "demo-fitnet.yaml"
    config_file = flatten(to_dict(load_config(str(path))))
    differ = {k: (demo[k], config_file.get(k)) for k in demo
              if demo[k] != config_file.get(k) and k not in ("data.download", "data.dir", "device", "out", "name")}
    assert not differ, differ
