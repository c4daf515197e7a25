"""A scenario file reads no environment variable but `DRIVESTACK_DATA` (issue 16): `crowd.data: ${MY_SECRET}`
printed the secret in errors and wrote it into episodes.csv."""

from __future__ import annotations

import pytest

from sim.scenarios import load_scenario, scenario_path
from sim.scenarios.families.crowd import expand_data_path
from sim.scenarios.schema import ScenarioError

SECRET = "hunter2-do-not-print"


def test_a_variable_outside_the_allow_list_is_refused_at_load_without_its_value(monkeypatch):
    monkeypatch.setenv("MY_SECRET", SECRET)
    scenario = load_scenario(scenario_path("ethucy_crowd"))
    with pytest.raises(ScenarioError, match=r"crowd\.data: \$\{MY_SECRET\} is not a variable a scenario") as refused:
        scenario.with_overrides({"crowd.data": "${MY_SECRET}/eth.txt"})
    assert SECRET not in str(refused.value)


def test_a_file_that_is_not_eth_ucy_is_refused_at_load_without_its_content(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text(f"{SECRET}:x:19000:0:99999:7:::\n")
    scenario = load_scenario(scenario_path("ethucy_crowd"))
    malformed = r"crowd\.data: malformed ETH/UCY file: .*shadow:1: expected 4 columns"
    with pytest.raises(ScenarioError, match=malformed) as e:
        scenario.with_overrides({"crowd.data": str(secret)})
    secret.write_text("TOPSECRETTOKEN 1 2 3\n")
    with pytest.raises(ScenarioError, match=r"shadow:1: frame id \(column 1\) is not a number") as first_token:
        scenario.with_overrides({"crowd.data": str(secret)})
    assert SECRET not in str(e.value) and "TOPSECRETTOKEN" not in str(first_token.value)


def test_a_binary_data_file_is_named_not_decoded(tmp_path):
    data = tmp_path / "eth.txt"
    data.write_bytes(b"\xff\xfe\x00garbage\n")
    with pytest.raises(ScenarioError, match=r"eth\.txt: not a UTF-8 text file"):
        load_scenario(scenario_path("ethucy_crowd")).with_overrides({"crowd.data": str(data)})


def test_the_data_variable_still_expands(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIVESTACK_DATA", str(tmp_path))
    assert expand_data_path("${DRIVESTACK_DATA}/ethucy/x.txt", "here") == tmp_path / "ethucy" / "x.txt"
    monkeypatch.delenv("DRIVESTACK_DATA")
    assert expand_data_path("${DRIVESTACK_DATA:-/data}/x.txt", "here").as_posix() == "/data/x.txt"
