"""Suites: named lists of scenarios.

A suite file holds `name`, `description` and `scenarios`, a list whose entries
are packaged scenario names (`cruising`) or paths ending in `.yaml`, relative
to the suite file.
"""

from __future__ import annotations

from pathlib import Path

from sim.scenarios.loader import (
    Scenario,
    load_scenario,
    packaged_scenarios,
    read_text_file,
    read_yaml,
    scenario_path,
)
from sim.scenarios.schema import Field, ScenarioError, Where, parse_section, text

SUITES_DIR = Path(__file__).parent / "suites"

_SUITE_FIELDS = {
    "name": text("suite name"),
    "description": text("what the suite measures"),
    "scenarios": Field("names", "scenario names or .yaml paths", random=False),
}


def packaged_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def resolve_suite(name_or_path: str | Path) -> list[Scenario]:
    """Scenarios of a packaged suite name (`hard`), a suite file, a scenario file, or a
    packaged scenario name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ScenarioError(f"{path}: no such suite or scenario file")
        return _from_file(path)
    name = str(name_or_path)
    if name in packaged_suites():
        return load_suite(SUITES_DIR / f"{name}.yaml")
    if name in packaged_scenarios():
        return [load_scenario(scenario_path(name))]
    raise ScenarioError(
        f"unknown suite {name!r}: expected a packaged suite ({', '.join(packaged_suites())}), "
        f"a packaged scenario ({', '.join(packaged_scenarios())}) or a path to a .yaml file"
    )


def _from_file(path: Path) -> list[Scenario]:
    if _is_suite(path):
        return load_suite(path)
    return [load_scenario(path)]


def _is_suite(path: Path) -> bool:
    doc = read_yaml(read_text_file(path, "suite or scenario"), str(path))
    return isinstance(doc, dict) and "scenarios" in doc


def load_suite(path: Path) -> list[Scenario]:
    where = Where(str(path))
    doc = read_yaml(read_text_file(path, "suite"), str(path))
    parsed = parse_section(doc, _SUITE_FIELDS, where)
    scenarios = []
    for i, entry in enumerate(parsed["scenarios"]):
        at = where.child("scenarios").item(i)
        if entry.endswith((".yaml", ".yml")):
            target = path.parent / entry
            if not target.is_file():
                at.fail(f"no such scenario file {target}")
            if target.resolve() == path.resolve():
                at.fail("names the suite file itself; a suite lists scenario files")
            if _is_suite(target):
                at.fail(f"{target} is a suite; suites do not nest, list its scenarios instead")
            scenarios.append(load_scenario(target))
        elif entry in packaged_scenarios():
            scenarios.append(load_scenario(scenario_path(entry)))
        else:
            at.fail(f"unknown scenario {entry!r}; packaged: {', '.join(packaged_scenarios())}")
        earlier = [j for j, other in enumerate(scenarios[:-1]) if other.name == scenarios[-1].name]
        if earlier:  # results, summaries and resumed runs are keyed by scenario name
            at.fail(f"scenario name {scenarios[-1].name!r} is also scenarios[{earlier[0]}]'s; give each its own name")
    return scenarios
