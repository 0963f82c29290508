"""The package runs on every Python that pyproject.toml admits: vermin finds the oldest Python each source file
needs (syntax, standard-library modules and functions) and fails above the declared minimum."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def declared_minimum() -> str:
    match = re.search(r'requires-python\s*=\s*">=\s*([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert match, "pyproject.toml declares no requires-python"
    return match[1]


def test_source_needs_no_newer_python_than_declared():
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    if vermin is None:
        pytest.fail("vermin is missing: it is in the test extras (pip install -e '.[test]')")
    proc = subprocess.run([vermin, f"-t={declared_minimum()}-", "--violations", "--no-tips", "--eval-annotations",
                           str(ROOT / "src" / "fitnets")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_check_catches_a_newer_module(tmp_path):
    # The check above can fail: a file importing tomllib (3.11) unguarded is flagged against 3.10.
    (tmp_path / "new.py").write_text("import tomllib\n")
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    proc = subprocess.run([vermin, "-t=3.10-", "--violations", "--no-tips", str(tmp_path)], capture_output=True,
                          text=True)
    assert proc.returncode != 0 and "tomllib" in proc.stdout
