"""How the code is laid out: no import cycles, demos kept out of the widgets, and test
code kept out of the product."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "engine", "resources")
# The only app modules that run as scripts (the engine's own tools live in engine/).
SCRIPTS = {"app/launcher.py", "app/dev/demo.py"}
# Developer tools that may use the test helpers (they say so when run without them).
MAY_IMPORT_TESTS = {"app/dev/demo.py"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _module_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of ours imported when ``name`` is imported: top-level statements only
    (an import inside a function runs later and cannot close a cycle at import time),
    skipping ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if "TYPE_CHECKING" in ast.unparse(node.test):
                    visit(node.orelse)
                    continue
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)

    visit(tree.body)
    # Importing a.b.c runs a and a.b first.
    closed = set()
    for module in found:
        parts = module.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in closed if m in known and m != name}


def test_no_import_cycles():
    modules = _modules()
    graph = {
        name: _module_level_imports(path, name, set(modules)) for name, path in modules.items()
    }
    # A package's __init__ importing its own submodules is how packages work, not a cycle.
    graph = {n: {m for m in deps if not n.startswith(m + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                walk(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle(tmp_path):
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("from a import x\n")
    known = {"a", "b"}
    assert _module_level_imports(tmp_path / "a.py", "a", known) == {"b"}
    assert _module_level_imports(tmp_path / "b.py", "b", known) == {"a"}
    (tmp_path / "c.py").write_text("def f():\n    import a\n")
    assert _module_level_imports(tmp_path / "c.py", "c", known) == set()


def test_only_the_entry_points_run_as_scripts():
    offenders = [
        rel
        for rel in (p.relative_to(ROOT).as_posix() for p in (ROOT / "app").rglob("*.py"))
        if rel not in SCRIPTS and '__name__ == "__main__"' in (ROOT / rel).read_text()
    ]
    assert offenders == [], "use python -m app.dev.demo NAME instead of a __main__ block"


def test_the_product_does_not_import_test_code():
    offenders = []
    for path in _modules().values():
        rel = path.relative_to(ROOT).as_posix()
        if rel in MAY_IMPORT_TESTS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            offenders += [f"{rel}: {n}" for n in names if n.split(".")[0] in ("tests", "pytest")]
    assert offenders == []
