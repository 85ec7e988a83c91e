"""graft.measures is pure numpy / scipy / scikit-learn: it never imports torch or a graft stage (DESIGN.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "graft" / "measures"
THIRD_PARTY = {"numpy", "scipy", "sklearn"}
PURE_GRAFT = {"graft.errors", "graft.validation"}
# The array-in, number-out modules: only graft.errors and graft.validation besides each other.
PURE = {"__init__.py", "_inputs.py", "transferability.py", "ranking.py", "probe.py", "similarity.py", "classes.py"}


def _imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_no_torch_and_only_numeric_libraries_in_the_pure_modules(path):
    for name in _imported(path):
        root = name.split(".")[0]
        assert root != "torch", f"{path.name} imports {name}: measures never sees a model"
        if path.name not in PURE:  # other modules of the stage: tests/test_layering.py checks their graft imports
            continue
        if root == "graft":
            assert name in PURE_GRAFT or name.startswith("graft.measures"), f"{path.name} imports {name}"
        else:
            assert root in THIRD_PARTY or root in sys.stdlib_module_names, f"{path.name} imports {name}"
