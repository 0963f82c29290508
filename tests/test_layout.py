"""The package's structure: no import circles (a function-level import counts as much as a top-level one; only
``if TYPE_CHECKING:`` imports, which never run, are left out), and the core imports no model zoo."""

import ast
from pathlib import Path

import fitnets

ROOT = Path(fitnets.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The fitnets modules ``path`` imports anywhere except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
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
