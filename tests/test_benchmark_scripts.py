"""The benchmark scripts parse, and the student-vs-teacher search keeps to its fair protocol."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", sorted((ROOT / "benchmarks").glob("*.sh")), ids=lambda p: p.name)
def test_script_parses(script):
    subprocess.run(["sh", "-n", str(script)], check=True)


def test_search_gives_the_students_the_teachers_augmentation_and_no_longer_a_schedule():
    text = (ROOT / "benchmarks" / "student_matches_teacher.sh").read_text()
    teacher = yaml.safe_load((ROOT / "configs" / "paper-mnist-teacher.fashion-mnist.yaml").read_text())
    fit = re.search(r'FIT="(.*?)"', text, flags=re.S).group(1)
    assert f"data.pad={teacher['data']['pad']}" in fit and "data.flip=true" in fit and teacher["data"]["flip"]
    listing = re.search(r"<<'LIST'\n(.*?)\nLIST", text, flags=re.S).group(1).splitlines()
    assert len(listing) >= 2
    for line in listing:
        name, flags = line.split(":", 1)
        epochs = int(re.search(r"--epochs (\d+)", flags).group(1))
        hint = int(re.search(r"--hint-epochs (\d+)", flags).group(1))
        assert epochs + hint <= teacher["epochs"], name
