"""Scenarios: YAML files, procedural parameters, family builders, suites.

    scenario = load_scenario(scenario_path("cruising"))
    state = build_batch(scenario, seeds=range(64), device="cuda")
    steps = episode_steps(scenario)
    for scenario in resolve_suite("hard"): ...

docs/scenarios.md documents every family and every key.
"""

from __future__ import annotations

from sim.scenarios.build import build_batch, episode_steps
from sim.scenarios.families import FAMILIES, Family
from sim.scenarios.loader import load_scenario, packaged_scenarios, scenario_path
from sim.scenarios.scenario import Scenario
from sim.scenarios.schema import MissingData, ScenarioError
from sim.scenarios.suites import packaged_suites, resolve_suite

__all__ = [
    "FAMILIES",
    "Family",
    "Scenario",
    "MissingData",
    "ScenarioError",
    "build_batch",
    "episode_steps",
    "load_scenario",
    "packaged_scenarios",
    "packaged_suites",
    "resolve_suite",
    "scenario_path",
]
