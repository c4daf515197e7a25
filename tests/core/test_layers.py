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
