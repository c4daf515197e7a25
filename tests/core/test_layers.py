"""The packages depend on each other one way, bottom to top (shared/DESIGN.md): core < sim < perception <
prediction < planning < stack < deploy < fleet. A module importing a package above its own fails here, naming
the file and line, so the layering is kept by a test rather than by review."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("core", "sim", "perception", "prediction", "planning", "stack", "deploy", "fleet")
# The `drivestack` command composes every package, so it may import them all.
COMPOSITION_ROOT = {"stack/cli.py"}


def upward_imports() -> list[tuple[str, int, str]]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    found = []
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), name)):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in rank and rank[top] > rank[package]:
                        found.append((name, node.lineno, module))
    return found


def test_no_package_imports_one_above_it():
    upward = [(name, line, module) for name, line, module in upward_imports() if name not in COMPOSITION_ROOT]
    assert upward == [], "\n".join(f"{name}:{line} imports {module}" for name, line, module in upward)


def test_core_imports_no_other_drivestack_package():
    others = set(LAYERS) - {"core"}
    for path in sorted((ROOT / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in others, f"{path.name}:{node.lineno} imports {node.module}"


def _modules() -> dict[str, Path]:
    """Every module of the packages by dotted name (a package by its own name)."""
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports anywhere: at load, for type checking only (a circle of types is
    still a circle) or inside a function (a circle that closes later is still one)."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from package import submodule` depends on the submodule, not on the package's __init__.
            targets.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names)  # fmt: skip
    resolved = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        resolved.add(target)
    return resolved - {""}


def test_no_modules_import_each_other_in_a_circle():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    circles = [sorted(group) for group in _strongly_connected(graph) if len(group) > 1]
    assert circles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit on a deep graph)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(group)
    return groups
