"""No import circle anywhere in ``chanlite/`` (issue 15).

A circle makes import order matter, hides which module owns a concept and
turns a refactor of one into a change of the other. The graph is read from
the source with ``ast`` (nothing is imported), one node per module, with
every ``import`` / ``from ... import`` that runs when its function runs —
module level *and* inside functions — except two kinds that never execute
at import time and are the documented way to point back up:

- imports under ``if TYPE_CHECKING:`` (annotations only);
- imports inside a module-level ``__getattr__`` (PEP 562 re-exports that keep
  a 1.x spelling such as ``chanlite.sessions.enforce_ordering`` working).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "chanlite"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _skipped_nodes(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            skipped |= {id(n) for n in ast.walk(node)}
    return skipped


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom, modules: set[str]) -> list[str]:
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    # ``from . import worker_pool`` imports the submodule, not the package.
    found = [f"{target}.{alias.name}" for alias in node.names
             if f"{target}.{alias.name}" in modules]
    return found or [target]


def import_graph() -> dict[str, set[str]]:
    """Module -> the chanlite modules it imports (see the module docstring)."""
    files = {path: _module_name(path) for path in PACKAGE.rglob("*.py")}
    modules = set(files.values())
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for path, name in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skipped = _skipped_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(name, path.name == "__init__.py", node, modules)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                # importing a.b.c runs a/__init__ and a/b/__init__ too; those
                # edges are real, but a package importing its own submodule
                # (to re-export it) is the package's definition, not a circle.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("chanlite"):
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    # A few arrows every reader of docs/architecture.md relies on.
    assert "chanlite.layers.base" in graph["chanlite.layers.memory"]
    assert "chanlite.routing" in graph["chanlite.worker"]
    assert "chanlite.sessions" in graph["chanlite.ordering"]


def test_the_checker_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_chanlite():
    graph = import_graph()
    found = circles(graph)
    described = [
        " -> ".join(f"{m} (imports {sorted(graph[m] & set(c))})" for m in c) for c in found
    ]
    assert not found, ("import circles in chanlite/ (break each; see docs/architecture.md):\n"
                       + "\n".join(described))
