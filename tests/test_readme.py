"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    assert blocks(), "the README has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks()[0], "README.md", "exec"), namespace)
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
    assert 0.1 < namespace["results"]["test_acc"] <= 1 and (tmp_path / "runs" / "readme").is_dir()
