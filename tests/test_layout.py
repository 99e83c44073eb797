"""dvc.yaml mirrors stages/layout.py and the stages' imports: one source of truth, checked.

For every stage: its data deps are exactly layout.STAGES[stage].inputs, its
outs/metrics/plots exactly .outputs, and its code deps exactly the project
modules its command imports (transitively), less the plumbing that cannot
change an output (INFRASTRUCTURE). A stage that starts importing a module
without listing it would not rerun when that module changes: this test fails
first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from stages import layout

PROJECT = Path(__file__).resolve().parents[1]
# Imported by every stage, never shaping an output: progress bars, the error type,
# the command runner and its cost meter, the paths (a moved path changes dvc.yaml's outs anyway),
# and the guards that only refuse to run (a by-hand run on changed images, a DVC experiment copy).
# The subpackages' __init__ files hold only their docstring (tests/test_architecture.py checks it).
INFRASTRUCTURE = {"laic_core/__init__.py", "laic_core/errors.py", "laic_core/progress.py", "stages/__init__.py",
                  "stages/runner.py", "stages/cost.py", "stages/layout.py", "stages/guards.py",
                  *(p.relative_to(PROJECT).as_posix() for p in PROJECT.glob("laic_core/*/__init__.py"))}


def _module_file(name: str) -> str | None:
    path = PROJECT / Path(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py").relative_to(PROJECT).as_posix()
    if (path / "__init__.py").is_file():
        return (path / "__init__.py").relative_to(PROJECT).as_posix()
    return None


def project_imports(relpath: str) -> set[str]:
    """Project modules (as repo-relative files) that `relpath` imports, transitively."""
    seen: set[str] = set()
    todo = [relpath]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in INFRASTRUCTURE:  # plumbing: what it imports is not the stage's either
            continue
        tree = ast.parse((PROJECT / current).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] in ("laic_core", "stages"):
                    found = _module_file(name)
                    if found:
                        todo.append(found)
    return seen


def dvc_stages() -> dict:
    return yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]


def _paths(entries) -> set[str]:
    out = set()
    for entry in entries or []:
        out.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return out


@pytest.mark.parametrize("stage", sorted(layout.STAGES))
def test_dvc_yaml_matches_the_layout_and_the_imports(stage):
    declared = dvc_stages()[stage]
    module = declared["cmd"].split("python -m ")[1].split()[0]
    code = {p for p in project_imports(_module_file(module)) if p not in INFRASTRUCTURE}
    deps = _paths(declared.get("deps"))
    io = layout.STAGES[stage]
    data_deps = {p for p in deps if not p.endswith(".py")} - set(io.extra)
    assert {p for p in deps if p.endswith(".py")} == code, f"{stage}: code deps differ from its imports"
    assert data_deps == {str(p) for p in io.inputs}, f"{stage}: data deps differ from layout.STAGES"
    assert set(io.extra) <= deps
    outs = _paths(declared.get("outs")) | _paths(declared.get("metrics")) | _paths(declared.get("plots"))
    assert outs == {str(p) for p in io.outputs}, f"{stage}: outs differ from layout.STAGES"


def test_every_dvc_stage_is_declared_in_the_layout():
    assert set(dvc_stages()) == set(layout.STAGES)


def test_evaluate_depends_on_every_registered_methods_table():
    from laic_core.methods import METHODS

    deps = _paths(dvc_stages()["evaluate"]["deps"])
    for method in METHODS.values():
        for role in method.roles:
            assert str(layout.assignments(method.stage, role)) in deps, method.name
