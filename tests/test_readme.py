"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    student = namespace["student"]
    assert (tmp_path / "student.pt").is_file()
    import torch

    state = torch.load(tmp_path / "student.pt")
    assert set(state) == set(student.state_dict())  # plain weights: no regressor keys
