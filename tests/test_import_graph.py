"""The library's import graph (module-level imports, outside ``if TYPE_CHECKING``): no cycle between
its packages and top-level modules, and each space's package imports no other space's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LIBRARY = REPO_ROOT / "cdarts"
SPACES = ("darts", "nasbench201", "chain")


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")


def _runtime_imports(path: Path) -> set[str]:
    """cdarts modules imported at module level (function bodies and TYPE_CHECKING blocks excluded)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("cdarts"):
                found.add(sub.module)
            elif isinstance(sub, ast.Import):
                found |= {alias.name for alias in sub.names if alias.name.startswith("cdarts")}
    return found


def _unit(module: str) -> str:
    """A package directly under cdarts (with its subpackages), or a top-level module."""
    return ".".join(module.split(".")[:2])


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in LIBRARY.rglob("*.py"):
        source = _unit(_module_name(path))
        for target in map(_unit, _runtime_imports(path)):
            if target != source:
                edges.setdefault(source, set()).add(target)
    return edges


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for nxt in edges.get(stack.pop(), set()) - seen:
            seen.add(nxt)
            stack.append(nxt)
    return seen


def test_no_import_cycle_between_the_librarys_packages() -> None:
    edges = _graph()
    assert "cdarts.spaces" in edges and "cdarts.config" in edges  # the walk saw the library
    cycles = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in _reachable(edges, b)})
    assert cycles == []


@pytest.mark.parametrize("space", SPACES)
def test_a_space_imports_no_other_space_and_shared_blocks_import_none(space: str) -> None:
    others = {f"cdarts.spaces.{other}" for other in SPACES if other != space}
    for path in (LIBRARY / "spaces" / space).rglob("*.py"):
        crossing = {m for m in _runtime_imports(path) if any(m == o or m.startswith(o + ".") for o in others)}
        assert not crossing, f"{path.name} imports {crossing}"
    for path in (LIBRARY / "spaces" / "shared").rglob("*.py"):
        spaces = {m for m in _runtime_imports(path) if m.split(".")[2:3] and m.split(".")[2] in SPACES}
        assert not spaces, f"shared/{path.name} imports {spaces}"
