"""A scenario file reads no environment variable but `DRIVESTACK_DATA` (issue 16): `crowd.data: ${MY_SECRET}`
printed the secret in errors and wrote it into episodes.csv."""

from __future__ import annotations

import pytest

from sim.scenarios import build_batch, load_scenario, scenario_path
from sim.scenarios.families.crowd import expand_data_path
from sim.scenarios.schema import ScenarioError

SECRET = "hunter2-do-not-print"


def test_a_variable_outside_the_allow_list_is_refused_without_its_value(monkeypatch):
    monkeypatch.setenv("MY_SECRET", SECRET)
    scenario = load_scenario(scenario_path("ethucy_crowd")).with_overrides({"crowd.data": "${MY_SECRET}/eth.txt"})
    with pytest.raises(ScenarioError, match=r"MY_SECRET.*not a variable a scenario may read") as refused:
        build_batch(scenario, [0])
    assert SECRET not in str(refused.value)


def test_the_data_variable_still_expands(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIVESTACK_DATA", str(tmp_path))
    assert expand_data_path("${DRIVESTACK_DATA}/ethucy/x.txt", "here") == tmp_path / "ethucy" / "x.txt"
    monkeypatch.delenv("DRIVESTACK_DATA")
    assert expand_data_path("${DRIVESTACK_DATA:-/data}/x.txt", "here").as_posix() == "/data/x.txt"
