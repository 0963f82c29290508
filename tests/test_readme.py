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


def blocks(lang="python", path=README):
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


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
    """docs/pieces.md, linked from the README: the hand-written loop over the method's parts."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks(path=README.parent / "docs" / "pieces.md")[0], "docs/pieces.md", "exec"), namespace)
    student = namespace["student"]
    assert (tmp_path / "student.pt").is_file()
    import torch

    state = torch.load(tmp_path / "student.pt")
    assert set(state) == set(student.state_dict())  # plain weights: no regressor keys


def test_readme_engine_example_runs(tmp_path, monkeypatch, fashion_dir):
    (tmp_path / "configs").symlink_to(README.parent / "configs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks()[1], "README.md", "exec"), namespace)
    assert namespace["results"]["test_acc"] > 0.4  # chance: 0.1
    # `out` is the parent of run folders; the folder's default name is method-student-seed (as the README's
    # `fitnets distill --resume runs/fitnet-paper-mnist-fitnet-seed0` has it)
    run_dir = tmp_path / "runs" / "readme" / "fitnet-paper-mnist-fitnet-seed0"
    assert (run_dir / "results.json").is_file(), f"no results.json in {run_dir}"
    assert json.loads((run_dir / "results.json").read_text())["test_acc"] == namespace["results"]["test_acc"]


# What the README says each command prints, as patterns searched in its output (stdout; "err:" before one: the
# log on stderr), keyed by the start of the command's README line (the longest key that matches).
RESULT = (r"^{method} {student} seed {seed}: test accuracy 0\.\d{{4}} \(\d+s\); "
          r"run folder runs/{method}-{student}-seed{seed}$")
PRINTS = {
    "models": [r"^paper-mnist-fitnet +36,226 .* guided=conv4 ", r"^paper-mnist-teacher +418,714 .* hint=conv2 "],
    "layers": [r"^conv2 +MaxoutConv2d +295,008 +\(48, 4, 4\)$", r"^classifier +Linear +2,170 +\(10,\)$"],
    "suggest": [r"^\| 1 \| \w+ \(\d+, \d+, \d+\) \| \w+ \(\d+, \d+, \d+\) \| [\d,]+ \| hint at \d+% of the teacher's "
                r"compute \(the midpoint of the \d+–\d+% it spans\), guided at \d+% of the student's",
                r"\(registry default\)"],
    "distill --dry-run": [r"^hint +conv2 \(48, 4, 4\) \(teacher\)$", r"^guided +conv4 \(16, 4, 4\) \(student\)$",
                          r"^regressor Conv2d\(kernel \(1, 1\), 1,632 parameters", r"^stage 1 +1 epochs, hint loss; ",
                          r"^stage 2 +1 epochs, KD loss "],
    "distill --method fitnet --teacher paper-mnist-teacher --student vit-fmnist": [
        r"^guided +blocks\.2 \(64, 7, 7\) \(student; tokens: 1 extra left out, 7×7 patches as a map\)$"],
    "distill --method fitnet --teacher": [RESULT.format(method="fitnet", student="paper-mnist-fitnet", seed=0),
                                          r"err:^stage=hint epoch=1 ", r"err:^stage=main epoch=1 kd_weight="],
    "distill --method kd": [RESULT.format(method="kd", student="paper-mnist-fitnet", seed=0)],
    "distill --method fitnet-onestage --set hint_stage.beta=10": [
        RESULT.format(method="fitnet-onestage", student="paper-mnist-fitnet", seed=0),
        r"err:^train +1 epochs, one stage .*cross-entropy \+ 10\.0 × MSE\(regressor\(guided\), hint\), no KD term"],
    "distill --method fitnet-onestage-kd": [
        r"err:cross-entropy \+ 100\.0 × MSE\(regressor\(guided\), hint\) \+ λ·KD"],
    "distill --regressor-first 1 --hint-diagnostics": [
        r"err:^stage=hint epoch=1 student_frozen=1 .* val_guided_probe_acc=\S+ val_hint_probe_acc=\S+ val_cka=\S+$"],
    "train": [RESULT.format(method="ce", student="paper-mnist-teacher", seed=0)],
    "frontier": [r"^\| resnet8\(in_channels=1\) \| 77,754 \| 9\.35M \| ",
                 r"^\*\*Pick\*\* \(the most accurate student at ≥ 3× the teacher's speed\): ",
                 r"^written: runs/which/frontier\.md, frontier\.json$"],
    "run configs/demo-fitnet.yaml --seeds 3": [RESULT.format(method="fitnet", student="paper-mnist-fitnet", seed=s)
                                               for s in range(3)],
    "distill --resume": [r"err:^resuming stage main after epoch 1$", r"err:^stage=main epoch=2 ",
                         RESULT.format(method="fitnet", student="paper-mnist-fitnet", seed=0)],
    "evaluate": [r"^runs/fitnet-paper-mnist-fitnet-seed0: test accuracy (0\.\d{4}), loss \d\.\d{4} \(200 images\)$"],
    "diagnose": [r"guided conv4 vs hint conv2 on 100 validation examples: linear probe 0\.\d{4} \(the teacher's hint: "
                 r"0\.\d{4}\), linear CKA with the hint -?\d\.\d{4}$"],
    "export": [r"^exported paper-mnist-fitnet \(36,226 parameters\) to student/: model\.safetensors, model\.onnx, "
               r"model\.json; ONNX Runtime vs PyTorch max abs diff \d"],
    "report": [r"^\| fashion-mnist \| fitnet \| paper-mnist-fitnet \| paper-mnist-teacher \| 1 \| \d+\.\d\d \| "],
    "bench speed": [r"^\| paper-mnist-teacher \| paper-mnist-fitnet \| 29,944 \| 5\.6M \| 12\.05 \| [\d,]+ \| "
                    r"\d+\.\d\d \|$",
                    r"^\| paper-cifar-teacher \| paper-fitnet1 \| 249,576 \| .* \| 36\.24 \(36\.00\) \|"],
    "bench step": [r'"settings": "defaults"', r'"settings": "--fast"', r'"step": "CE step"',
                   r'"step": "KD step, teacher logits cached"', r'"step": "FitNet stage 1, cut, hints cached"'],
    "store build": [r"^store \S+: 15,000 of 15,000 slots filled"],
    "store list": [r"^\| key \| teacher \| data \| examples × views \| classes \| dtype \| size \| filled \|",
                   r"^\| [0-9a-f]+ \| paper-mnist-teacher \| fashion-mnist \| 300 × 50 \| 10 \| float32 \| .* \| "
                   r"100\.0% \|"],
    "store clear": [r"^deleted (\d+) store\(s\) from "],
}


def printed(line: str) -> list[str]:
    """The patterns for the README command ``line`` (its arguments after ``fitnets``)."""
    keys = [key for key in PRINTS if line == key or line.startswith(key + " ")]
    assert keys, f"the README's `fitnets {line}` has no entry in PRINTS: say what it prints"
    return PRINTS[max(keys, key=len)]


@pytest.mark.slow
def test_every_readme_command_runs_and_prints_what_the_readme_says(tmp_path, monkeypatch, fashion_dir, capsys):
    from fitnets.tools.cli import main

    # a cache of its own: `store clear` then counts the stores these commands made, not the whole session's
    monkeypatch.setenv("FITNETS_CACHE", str(tmp_path / "cache"))
    cmds = commands()
    assert len(cmds) >= 10 and {c[0] for c in cmds} >= {"models", "layers", "distill", "train", "run", "evaluate",
                                                        "export", "report", "bench"}
    shared, fitnet_made = tmp_path / "shared", False
    for i, argv in enumerate(cmds):
        kind = " ".join(argv[:2]) if argv[0] in ("bench", "store") else argv[0]
        new_run = kind in ("train", "distill", "run", "frontier") and "--resume" not in argv and "--dry-run" not in argv
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
        stores = tmp_path / "cache" / "stores"
        made = sorted(stores.iterdir()) if stores.is_dir() else []  # what `store clear` must delete
        code = main(expanded + extra)
        out, err = capsys.readouterr()
        line = " ".join(argv)
        assert code == 0, f"README command failed: fitnets {line}\n{err[-2000:]}"
        for pattern in printed(line):
            text = err if pattern.startswith("err:") else out
            found = re.search(pattern.removeprefix("err:"), text, flags=re.M)
            assert found, f"`fitnets {line}` did not print {pattern!r}:\n{text[-3000:]}"
            if argv[0] == "evaluate":  # the test accuracy the run folder holds
                results = json.loads((shared / argv[1] / "results.json").read_text())
                assert found.group(1) == f"{results['test_acc']:.4f}"
            if kind == "store clear":  # every store the commands above made, and nothing left
                assert int(found.group(1)) == len(made) >= 1 and not list(stores.iterdir())
    assert {p.name for p in (shared / "student").iterdir()} >= {"model.safetensors", "model.onnx", "model.json"}
    report = shared / "report-readme"
    assert (report / "report.md").is_file() and list(report.glob("*.png"))  # the table and its figures


def test_readme_bring_your_own_models_example_runs(monkeypatch, tmp_path):
    """docs/any-model.md, linked from the README: a ViT with an output object, a CNN returning a dict, joined by
    FitNet."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks(path=README.parent / "docs" / "any-model.md")[0], "docs/any-model.md", "exec"), namespace)
    fitnet = namespace["fitnet"]
    assert fitnet.guided_layout is not None and fitnet.guided_shape == (32, 7, 7) and fitnet.hint_shape == (64, 4, 4)
    assert "Resample(to 4×4)" in fitnet.describe()
    assert namespace["student"].patch.weight.grad is not None and namespace["student"].head.weight.grad is None
    assert torch_finite(namespace["losses"]["loss"])


def torch_finite(t) -> bool:
    import torch

    return bool(torch.isfinite(t))
