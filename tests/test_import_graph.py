"""No import circle among chanlite's modules (issue 15).

A circle makes the import order matter and hides which module is the lower
layer. The graph is built with :mod:`ast` from the source files (no import
runs), counting imports at module level and inside functions alike — a lazy
import inside a function still ties the two modules together — but not
those under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import chanlite

ROOT = Path(chanlite.__file__).resolve().parent


def module_name(path: Path, root: Path = ROOT) -> str:
    """``chanlite.layers.ipc`` for ``<root>/layers/ipc.py`` (a package: its ``__init__``)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(path: Path, modules: set[str], root: Path = ROOT) -> set[str]:
    """The modules of ``modules`` that the file at ``path`` imports when it runs."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(target: str) -> None:
        # "a.b.c" may name a module or an attribute of module "a.b"
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                resolve(f"{prefix}.{alias.name}")  # a submodule, or a name in prefix
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Every module under ``root`` -> the modules under ``root`` it imports."""
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(p, root) for p in paths}
    return {module_name(p, root): imported_modules(p, modules, root) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_graph_sees_the_ipc_modules_imports():
    graph = import_graph()
    assert "chanlite.layers._ipc_layout" in graph["chanlite.layers._ipc_store"]
    assert "chanlite.layers._ipc_store" in graph["chanlite.layers.ipc"]
    # under TYPE_CHECKING only: not an edge
    assert "chanlite.layers._ipc_store" not in graph["chanlite.layers._ipc_diag"]


def test_find_cycle_reports_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_among_the_ipc_modules():
    graph = import_graph()
    ipc = {m: {d for d in deps if ".layers._ipc_" in d or d.endswith(".layers.ipc")}
           for m, deps in graph.items()
           if ".layers._ipc_" in m or m.endswith(".layers.ipc")}
    assert len(ipc) >= 10
    assert find_cycle(ipc) is None, f"import circle: {' -> '.join(find_cycle(ipc) or [])}"
