"""The README runs as written: its Python examples, and every `fitnets` command in its shell blocks (training
commands on a small subset and for one epoch; benchmarks with few repeats — the flags are appended, so the
README's own flags are all parsed and used)."""

import glob
import json
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

TINY_RUN = ["--epochs", "1", "--train-size", "300", "--val-size", "100", "--set", "data.test_size=200", "--no-progress"]
QUICK = {"train": TINY_RUN, "distill": TINY_RUN + ["--hint-epochs", "1"], "run": TINY_RUN + ["--hint-epochs", "1"],
         "bench speed": ["--batch-size", "4", "--repeats", "1", "--device", "cpu"],
         "bench step": ["--steps", "1", "--warmup", "0", "--rounds", "1", "--no-compile", "--batch-size", "8",
                        "--device", "cpu", "--json"],
         "report": ["--out", "report-readme"],
         "frontier": ["--methods", "kd", "--frontier-seeds", "0", "--epochs", "1", "--train-size", "300", "--val-size",
                      "100", "--set", "data.test_size=100", "--bench-repeats", "1", "--no-progress", "--no-figure"],
         "store build": ["--train-size", "300", "--val-size", "100", "--no-progress"]}


def blocks(lang="python"):
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def commands() -> list[list[str]]:
    """The `fitnets ...` lines of the README's sh blocks, comments dropped, as argument lists."""
    found = []
    for block in blocks("sh"):
        for line in block.splitlines():
            line = re.split(r"\s+#\s", line)[0].strip()
            if line.startswith("fitnets "):
                found.append(shlex.split(line)[1:])
    return found


def test_readme_your_data_example_runs(tmp_path, monkeypatch):
    """The first thing a Python user sees: a Dataset with a random transform and two nn.Module objects through
    fitnets.distill, into a run folder."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks()[0], "README.md", "exec"), namespace)
    results, run_dir = namespace["results"], tmp_path / "runs" / "my-fitnet"
    assert json.loads((run_dir / "results.json").read_text())["test_acc"] == results["test_acc"]
    assert [json.loads(line)["stage"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == \
        ["hint", "main", "main"]
    import torch

    from fitnets.checkpoint import read_weights

    saved = read_weights(run_dir / "student.safetensors")   # the trained object, as saved: plain keys
    assert all(torch.equal(saved[k], v) for k, v in namespace["student"].state_dict().items())


def test_readme_python_example_runs(tmp_path, monkeypatch):
    assert blocks(), "the README has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks()[1], "README.md", "exec"), namespace)
    student = namespace["student"]
    assert (tmp_path / "student.pt").is_file()
    import torch

    state = torch.load(tmp_path / "student.pt")
    assert set(state) == set(student.state_dict())  # plain weights: no regressor keys


def test_readme_engine_example_runs(tmp_path, monkeypatch, fashion_dir):
    (tmp_path / "configs").symlink_to(README.parent / "configs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks()[2], "README.md", "exec"), namespace)
    assert namespace["results"]["test_acc"] > 0.4  # chance: 0.1
    # `out` is the parent of run folders; the folder's default name is method-student-seed (as the README's
    # `fitnets distill --resume runs/fitnet-paper-mnist-fitnet-seed0` has it)
    run_dir = tmp_path / "runs" / "readme" / "fitnet-paper-mnist-fitnet-seed0"
    assert (run_dir / "results.json").is_file(), f"no results.json in {run_dir}"
    assert json.loads((run_dir / "results.json").read_text())["test_acc"] == namespace["results"]["test_acc"]


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path, monkeypatch, fashion_dir, capsys):
    from fitnets.tools.cli import main

    cmds = commands()
    assert len(cmds) >= 10 and {c[0] for c in cmds} >= {"models", "layers", "distill", "train", "run", "evaluate",
                                                        "export", "report", "bench"}
    shared, fitnet_made = tmp_path / "shared", False
    for i, argv in enumerate(cmds):
        kind = " ".join(argv[:2]) if argv[0] in ("bench", "store") else argv[0]
        new_run = kind in ("train", "distill", "run") and "--resume" not in argv and "--dry-run" not in argv
        # The first FitNets run is made where the later commands (resume, evaluate, export, report) look for it;
        # every other new run gets a folder of its own, so that their default run names do not collide.
        first_fitnet = new_run and not fitnet_made and "fitnet" in argv
        fitnet_made = fitnet_made or first_fitnet
        cwd = shared if not new_run or first_fitnet else tmp_path / f"cmd{i}"
        cwd.mkdir(exist_ok=True)
        if not (cwd / "configs").exists():
            (cwd / "configs").symlink_to(README.parent / "configs")
        monkeypatch.chdir(cwd)
        expanded = [m for a in argv for m in (sorted(glob.glob(a)) if "*" in a else [a])]
        # the README's resume continues the tiny run made above: one more epoch, as a resume may extend a run
        extra = ["--epochs", "2", "--no-progress"] if "--resume" in argv else QUICK.get(kind, [])
        code = main(expanded + extra)
        err = capsys.readouterr().err
        assert code == 0, f"README command failed: fitnets {' '.join(argv)}\n{err[-2000:]}"
    assert (shared / "student" / "model.onnx").is_file() and (shared / "report-readme" / "report.md").is_file()


def test_readme_bring_your_own_models_example_runs(monkeypatch, tmp_path):
    """The fourth python block: a ViT with an output object, a CNN returning a dict, joined by FitNet."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks()[3], "README.md", "exec"), namespace)
    fitnet = namespace["fitnet"]
    assert fitnet.guided_layout is not None and fitnet.guided_shape == (32, 7, 7) and fitnet.hint_shape == (64, 4, 4)
    assert "Resample(to 4×4)" in fitnet.describe()
    assert namespace["student"].patch.weight.grad is not None and namespace["student"].head.weight.grad is None
    assert torch_finite(namespace["losses"]["loss"])


def torch_finite(t) -> bool:
    import torch

    return bool(torch.isfinite(t))
