"""The one-way import rule of DESIGN.md: a stage imports only from stages to its left."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "graft"
ORDER = ["data", "models", "surgery", "features", "measures", "strategy", "training", "export", "report", "workflow",
         "api", "demo", "cli"]
# importable from every layer
UTILITIES = {"errors", "validation", "jsonable", "progress", "files", "fingerprint", "threads", "text", "memory", "devices", "distributed"}
ANYWHERE = UTILITIES | {"__init__", "__main__"}


def _layer(module: str) -> str:
    """'graft.models.zoo' -> 'models'; 'graft.api' -> 'api'; 'graft.cli.train' -> 'cli' (a package is one layer)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("graft")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("graft") and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _files():
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_known_layer():
    for path in _files():
        layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        assert layer in ORDER or layer in ANYWHERE or layer == "assets", f"{path} is in no layer of {ORDER}"


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_flow_left(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if own == "__main__":
        allowed = {"cli"}
    elif own in ANYWHERE:
        allowed = set(UTILITIES) if own != "__init__" else set(ORDER) | ANYWHERE
    else:
        allowed = set(ORDER[: ORDER.index(own) + 1]) | UTILITIES
        allowed.discard("__init__")
    for line, module in _imports(path):
        target = _layer(module)
        if target == "__init__" and module == "graft":
            assert own in {"api", "demo", "cli"}, f"{path}:{line} imports the top-level package"
            continue
        assert target in allowed, f"{path.relative_to(PACKAGE)}:{line} imports {module}: {own} may not import {target}"


def test_a_package_is_one_layer():
    assert (_layer("graft.cli.train"), _layer("graft.cli"), _layer("graft.models.zoo")) == ("cli", "cli", "models")
    cli = [p for p in _files() if p.relative_to(PACKAGE).parts[0] == "cli"]
    assert len(cli) > 1, "graft.cli is a package: its modules are checked as the layer cli"


def test_the_rule_catches_a_backwards_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from graft.surgery import plan_surgery\n")
    assert _imports(bad) == [(1, "graft.surgery")]
    assert "surgery" not in ORDER[: ORDER.index("models") + 1]
