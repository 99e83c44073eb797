"""The tree shows the architecture: laic_core's subpackages import only what their `__init__` allows.

Checked on the source (every import, function-level ones included), so a
lazy import cannot hide a forbidden dependency or an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "laic_core"
# subpackage -> subpackages it must never import (the math takes arrays and returns arrays)
FORBIDDEN = {
    "method": {"data", "views"},
    "scoring": {"data", "views"},
    "baselines": {"data", "views"},
    "text": {"method", "scoring", "baselines", "views"},
    "data": {"text", "method", "scoring", "baselines", "views"},
}
TOP_LEVEL_LIMIT = 8  # modules directly under laic_core/, __init__.py included


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every laic_core module -> the laic_core modules it imports (as dotted module names)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name and t != "laic_core"}
        graph[name] = found
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else "top"


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_subpackages_import_only_what_they_may(part):
    bad = sorted(f"{m} imports {t}" for m, targets in _imports().items() if _part(m) == part
                 for t in targets if _part(t) in FORBIDDEN[part])
    assert not bad, bad


def test_views_is_imported_by_nothing_else_in_laic_core():
    bad = sorted(f"{m} imports {t}" for m, targets in _imports().items() if _part(m) != "views"
                 for t in targets if _part(t) == "views")
    assert not bad, bad


def test_no_import_cycles():
    graph = _imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_few_modules_at_the_top_and_a_doc_for_every_part():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_LEVEL_LIMIT, top
    for init in PACKAGE.glob("*/__init__.py"):
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init} says nothing about what lives there"
        # an __init__ with imports would make every stage depend on the whole subpackage
        assert all(isinstance(n, ast.Expr) for n in tree.body), f"{init} should only hold its docstring"
