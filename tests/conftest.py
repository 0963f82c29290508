import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

# Two cores on CI: one intra-op thread per test process keeps timings steady and avoids oversubscription.
torch.set_num_threads(1)

# Teacher-output stores go to a folder of this test session, never to the user's ~/.cache/fitnets (subprocesses
# started by the tests inherit it). A test that needs an empty store sets its own.
_CACHE = tempfile.mkdtemp(prefix="fitnets-test-cache-")
os.environ["FITNETS_CACHE"] = _CACHE


@pytest.fixture(scope="session", autouse=True)
def _remove_test_cache():
    yield
    shutil.rmtree(_CACHE, ignore_errors=True)


FASHION = Path(os.environ.get("FITNETS_DATA", "/usr/share/datasets/fashion-mnist"))


class TinyNet(nn.Module):
    """A small convnet for tests: conv (8, 8, 8) -> ReLU block -> conv (16, 4, 4) -> linear."""

    def __init__(self, width: int = 8, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))   # (w, 4, 4) for 8×8
        self.block = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())        # (2w, 4, 4)
        self.head = nn.Linear(2 * width * 16, num_classes)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).flatten(1))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinyNet


@pytest.fixture(scope="session")
def fashion_dir():
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"Fashion-MNIST is missing from {FASHION}: run `make data` (apt-get install dataset-fashion-mnist)")
    return FASHION


def user_module(tmp_path: Path, monkeypatch, name: str, code: str):
    """``code`` written and imported as the user's own module ``name`` (fresh for each test)."""
    import importlib
    import sys

    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    return importlib.import_module(name)
