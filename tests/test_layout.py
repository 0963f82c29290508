"""The package's structure: no import circles (a function-level import counts as much as a top-level one, and so
does an ``if TYPE_CHECKING:`` import: one that would close a circle only hides it), the layers pointing one way
(the core imports nothing of training or tools, nor the model zoo; the config is a leaf), and no module longer
than one sitting."""

import ast
from pathlib import Path

import torch

import fitnets

ROOT = Path(fitnets.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The fitnets modules ``path`` imports anywhere (under ``if TYPE_CHECKING:`` too)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fitnets"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n in known} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fitnets")}
    return {m for m in found if m in known}


def graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in ROOT.rglob("*.py")}
    # a package's __init__ only re-exports; importing a module through it is an import of that module
    return {name: _imports(path, set(files)) - {name} for name, path in files.items() if not path.name == "__init__.py"}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circles():
    assert _cycle(graph()) is None, " → ".join(_cycle(graph()))


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_core_imports_no_model_zoo():
    for name, imported in graph().items():
        if name.startswith("fitnets.core."):
            assert not [m for m in imported if m.startswith("fitnets.models")], name


def _reach(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_core_imports_nothing_of_training_or_tools():
    for name, imported in graph().items():
        if name.startswith("fitnets.core."):
            assert not [m for m in imported if m.startswith(("fitnets.training", "fitnets.tools"))], name


CONFIG = ("fitnets.training.config", "fitnets.training.schema", "fitnets.training.speed", "fitnets.training.methods")


def test_the_config_is_a_leaf():
    """The config describes a run: it reads the method table and the speed facts, never the recipes or anything
    that runs one (engine, steps, store, teacher outputs, the run)."""
    edges = graph()
    reached = _reach(edges, "fitnets.training.config")
    assert set(CONFIG) <= reached | {"fitnets.training.config"}
    allowed = set(CONFIG) | {"fitnets.errors", "fitnets.data.augment"}
    assert reached <= allowed, sorted(reached - allowed)


def test_the_layer_rules_see_an_import_hidden_under_type_checking(tmp_path):
    (tmp_path / "m.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from fitnets.training.recipes import METHODS\n")
    assert _imports(tmp_path / "m.py", {"fitnets.training.recipes"}) == {"fitnets.training.recipes"}


MAX_LINES = 400


def test_no_module_is_longer_than_one_sitting():
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"


def _loaded_after(code: str) -> list[str]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return [m for m in out.split() if m == "fitnets" or m.startswith("fitnets.")]


def test_the_package_is_lazy_importing_the_core_loads_the_core_alone():
    loaded = _loaded_after("import fitnets.core.losses")
    assert "fitnets.core.losses" in loaded
    assert all(m in ("fitnets", "fitnets.errors") or m.startswith("fitnets.core") for m in loaded), loaded
    assert _loaded_after("import fitnets") == ["fitnets"]


def test_the_lazy_package_keeps_its_public_names():
    import subprocess
    import sys

    code = ("import fitnets\nnames = fitnets.__all__\nassert set(names) <= set(dir(fitnets))\n"
            "assert all(getattr(fitnets, n) is not None for n in names)\n"
            "from fitnets import Run, distill, FitNet\nassert Run.__module__ == 'fitnets.training.run'\n"
            "try:\n    fitnets.nothing\nexcept AttributeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "has no attribute 'nothing'" in out
    assert {"FitNet", "Run", "RunConfig", "distill", "train", "load_weights", "FitNetsError"} <= set(fitnets.__all__)
    assert sorted(fitnets.__all__) == sorted(fitnets._EXPORTS)


def test_the_version_is_written_once():
    import re

    pyproject = (ROOT.parents[1] / "pyproject.toml").read_text()
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]  # the [project] table alone
    assert not re.search(r"(?m)^version\s*=", project) and 'dynamic = ["version"]' in project
    assert 'version = { attr = "fitnets.__version__" }' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+", fitnets.__version__)


def test_code_asks_a_split_not_its_class():
    """The three data splits share the ``Split`` protocol: no code asks which class a split is, and the streamed
    splits' copies are one piece of code (``Replaceable``)."""
    import re

    from fitnets.data.datasets import DatasetSplit
    from fitnets.data.folder import FolderStream
    from fitnets.data.images import ImageData
    from fitnets.data.split import Replaceable, Split

    asks = re.compile(r"isinstance\([^)]*\b(ImageData|FolderStream|DatasetSplit)\b")
    found = [f"{p.relative_to(ROOT)}:{i}" for p in ROOT.rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if asks.search(line)]
    assert not found, found
    assert issubclass(FolderStream, Replaceable) and issubclass(DatasetSplit, Replaceable)
    assert not any("_copy" in vars(cls) for cls in (ImageData, FolderStream, DatasetSplit))
    g = torch.Generator().manual_seed(0)
    data = ImageData(torch.randint(0, 256, (4, 1, 2, 2), dtype=torch.uint8, generator=g), torch.arange(4), 4)
    assert isinstance(data, Split) and isinstance(DatasetSplit([(torch.zeros(1, 2, 2), 0)], 1), Split)


def test_a_teacher_is_wrapped_in_one_place():
    """The run, the --fast tuner, bench, evaluate and suggest --probe all wrap a teacher with
    ``teacher_outputs.frozen_teacher`` (``FitNet`` keeps its public fallback for a bare module)."""
    builders = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                      if "FrozenTeacher(" in p.read_text() and p.name != "teacher.py")
    assert builders == ["core/fitnet.py", "training/teacher_outputs.py"], builders
    users = {"training/run.py", "training/fast.py", "tools/bench_step.py", "tools/commands/evaluate.py",
             "tools/commands/suggest.py"}
    assert all("frozen_teacher(" in (ROOT / u).read_text() for u in users)
