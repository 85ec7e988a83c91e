"""No import cycles inside graft: every import statement, function-local ones included, forms an acyclic graph.

A cycle "works" today only because one side defers its import into a function body; it breaks as soon as
someone moves that import to the top, and it hides which module really owns what. DESIGN.md: data flows
one way. This test parses every module with ``ast`` (nothing is imported), resolves each import to the graft
module it names, and fails with every cycle, each edge given with its file:line.

Resolution rules:
- ``import graft.a.b`` names ``graft.a.b``; a package name (``graft.a``) means its ``__init__.py``.
- ``from graft.a import b`` names the submodule ``graft.a.b`` when ``b`` is one, else ``graft.a``.
- relative imports (``from . import b``, ``from ..a import b``) are resolved against the importing file.
- a submodule importing its own package's ``__init__`` is an edge like any other.
- ``graft/__init__.py`` loads its verbs with ``importlib.import_module`` strings: not import statements, ignored.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "graft"
MAX_CYCLES_PER_COMPONENT = 25
# Imports under ``if TYPE_CHECKING:`` never run, but they still say one module depends on another: they count
# (the message marks them "under if TYPE_CHECKING"). Set False to look at runtime cycles only.
COUNT_TYPE_CHECKING = True


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: Path
    line: int
    where: str  # "module level", "in def name", "under if TYPE_CHECKING" ...
    names: tuple[str, ...]  # what the statement imports

    def describe(self, root: Path) -> str:
        try:
            shown = self.path.relative_to(root.parent.parent)
        except ValueError:
            shown = self.path
        return f"{self.source} -> {self.target}  ({shown}:{self.line}, {self.where}: {', '.join(self.names)})"


def module_names(package: Path) -> dict[str, Path]:
    """'graft.surgery.plan' -> its file; a package 'graft.surgery' -> its __init__.py."""
    top = package.name
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = [top, *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies inside (``graft.a.b.func`` -> ``graft.a.b``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _context(stack: list[ast.AST]) -> str:
    for node in reversed(stack):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return f"in def {node.name}"
    for node in stack:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return "under if TYPE_CHECKING"
    for node in reversed(stack):
        if isinstance(node, ast.ClassDef):
            return f"in class {node.name}"
    return "module level"


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Edge]:
    """Every import statement of one file (at any depth) resolved to the known modules it names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    top = module.split(".")[0]
    found: dict[tuple[str, int], tuple[str, list[str]]] = {}  # (target, line) -> (context, names)

    def add(target: str | None, node: ast.AST, stack: list[ast.AST], name: str) -> None:
        if target is not None and (COUNT_TYPE_CHECKING or _context(stack) != "under if TYPE_CHECKING"):
            found.setdefault((target, node.lineno), (_context(stack), []))[1].append(name)

    def visit(node: ast.AST, stack: list[ast.AST]) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == top or alias.name.startswith(top + "."):
                    add(_resolve(alias.name, known), node, stack, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                if node.level - 1:
                    base = base[: -(node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            if base_name == top or base_name.startswith(top + "."):
                for alias in node.names:
                    submodule = f"{base_name}.{alias.name}"
                    add(submodule if submodule in known else _resolve(base_name, known), node, stack, alias.name)
        for child in ast.iter_child_nodes(node):
            visit(child, [*stack, node])

    visit(tree, [])
    return [Edge(module, target, path, line, where, tuple(names))
            for (target, line), (where, names) in sorted(found.items(), key=lambda item: (item[0][1], item[0][0]))]


def import_graph(package: Path) -> tuple[dict[str, set[str]], dict[tuple[str, str], list[Edge]]]:
    known = module_names(package)
    graph: dict[str, set[str]] = {name: set() for name in known}
    edges: dict[tuple[str, str], list[Edge]] = {}
    for name, path in known.items():
        for edge in imports_of(name, path, known):
            graph[name].add(edge.target)
            edges.setdefault((edge.source, edge.target), []).append(edge)
    return graph, edges


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components in a stable order, members sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return sorted(components)


def elementary_cycles(graph: dict[str, set[str]], component: list[str], limit: int) -> list[list[str]]:
    """The simple cycles inside one component, each starting at its smallest member (at most ``limit``)."""
    members = set(component)
    cycles: list[list[str]] = []
    for start in component:
        allowed = {m for m in members if m >= start}
        path = [start]
        work = [iter(sorted(graph[start] & allowed))]
        while work and len(cycles) < limit:
            for child in work[-1]:
                if child == start:
                    cycles.append([*path, start])
                elif child not in path:
                    path.append(child)
                    work.append(iter(sorted(graph[child] & allowed)))
                    break
            else:
                work.pop()
                path.pop()
    return cycles[:limit]


def find_cycles(package: Path) -> list[str]:
    """One text block per import cycle: 'a -> b -> a' and, under it, each edge with its file:line."""
    graph, edges = import_graph(package)
    found = []
    for name in sorted(graph):
        if name in graph[name]:
            lines = [f"{name} -> {name}  (self-import)"]
            lines += [f"    {e.describe(package)}" for e in edges[(name, name)]]
            found.append("\n".join(lines))
    for component in strongly_connected(graph):
        if len(component) < 2:
            continue
        for cycle in elementary_cycles(graph, component, MAX_CYCLES_PER_COMPONENT):
            lines = [" -> ".join(cycle)]
            for source, target in zip(cycle, cycle[1:]):
                lines += [f"    {e.describe(package)}" for e in edges[(source, target)]]
            found.append("\n".join(lines))
    return found


def test_graft_has_no_import_cycles():
    cycles = find_cycles(PACKAGE)
    graph, _ = import_graph(PACKAGE)
    tangles = [", ".join(c) for c in strongly_connected(graph) if len(c) > 1]
    assert not cycles, (
        f"{len(cycles)} import cycle(s) in graft, in {len(tangles)} tangle(s) of modules [{'; '.join(tangles)}]. "
        "Break each by moving the shared code to a module both sides may import (DESIGN.md: data flows one way):"
        "\n\n" + "\n\n".join(cycles)
    )


# --- the finder itself, on a fake package -------------------------------------------------------------------


def _fake_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "fakepkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_finds_a_cycle_through_a_function_local_import(tmp_path):
    package = _fake_package(tmp_path, {
        "a.py": "from fakepkg.b import helper\n",
        "b.py": "def helper():\n    from fakepkg import a\n    return a\n",
    })
    cycles = find_cycles(package)
    assert len(cycles) == 1
    assert cycles[0].splitlines()[0] == "fakepkg.a -> fakepkg.b -> fakepkg.a"
    assert "b.py:2, in def helper: a)" in cycles[0]
    assert "a.py:1, module level: helper)" in cycles[0]


def test_an_acyclic_pair_is_clean(tmp_path):
    package = _fake_package(tmp_path, {
        "a.py": "import fakepkg.b\nfrom fakepkg import b\n",
        "b.py": "import os\n\ndef helper():\n    import fakepkg\n    return os\n",  # the empty __init__: no cycle
    })
    assert find_cycles(package) == []


def test_package_init_and_relative_imports_and_self_imports(tmp_path):
    package = _fake_package(tmp_path, {
        "sub/__init__.py": "from .inner import thing\n",
        "sub/inner.py": "thing = 1\n\ndef late():\n    from fakepkg.sub import thing\n    return thing\n",
        "solo.py": "def f():\n    from fakepkg.solo import f\n",
    })
    cycles = find_cycles(package)
    heads = [c.splitlines()[0] for c in cycles]
    assert heads == ["fakepkg.solo -> fakepkg.solo  (self-import)", "fakepkg.sub -> fakepkg.sub.inner -> fakepkg.sub"]
