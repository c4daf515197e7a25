"""Hostile scenario and suite files (issue 16): what someone else's file can do to the machine is bounded, and
every refusal names the file and the place."""

from __future__ import annotations

import pytest

from sim.scenarios import load_scenario, resolve_suite, scenario_path
from sim.scenarios.schema import ScenarioError

CRUISING = scenario_path("cruising").read_text()


def alias_bomb(levels: int) -> str:
    """A "billion laughs" description: each level lists the previous one nine times (9**levels strings)."""
    lines = ['description: &l0 ["lol"]']
    for level in range(1, levels + 1):
        lines.append(f"extra{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def with_top(text: str, tmp_path, name: str = "hostile.yaml"):
    """The cruising scenario with its top-level description replaced by `text`."""
    kept, in_description = [], False
    for line in CRUISING.splitlines():
        if not line.startswith(" "):  # a top-level key ends the folded description block
            in_description = line.startswith("description")
        if not in_description:
            kept.append(line)
    body = "\n".join(kept)
    path = tmp_path / name
    path.write_text(body.replace("family: cruising", "family: cruising\n" + text.rstrip("\n"), 1) + "\n")
    return path


def test_an_alias_bomb_is_refused_at_parse_time_naming_the_file_and_line(tmp_path):
    # Five levels keep the test cheap even if the refusal regresses (9**5 strings); the nine levels took
    # 1.9 GB and 45 s in the error formatter before aliases were refused.
    path = with_top(alias_bomb(5), tmp_path)
    with pytest.raises(ScenarioError, match=r"hostile\.yaml: malformed YAML at line \d+.*anchors and aliases"):
        load_scenario(path)


def test_a_single_anchor_is_refused_too(tmp_path):
    path = with_top("description: &text a plain description", tmp_path)
    with pytest.raises(ScenarioError, match="anchors and aliases"):
        load_scenario(path)


def test_a_suite_file_with_aliases_is_refused(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("name: s\ndescription: d\nscenarios: &all [cruising]\nmore: *all\n")
    with pytest.raises(ScenarioError, match=r"suite\.yaml: malformed YAML.*anchors and aliases"):
        resolve_suite(path)


def test_a_huge_value_in_the_wrong_place_is_shown_cut_short(tmp_path):
    huge = "description: [" + ", ".join([f'["item{i}", {{"k": [1, 2, 3, 4, 5, 6]}}]' for i in range(20000)]) + "]"
    path = with_top(huge, tmp_path)
    with pytest.raises(ScenarioError) as refused:
        load_scenario(path)
    message = str(refused.value)
    assert "hostile.yaml" in message and "description" in message and "list" in message
    assert len(message) < 400  # the 20,000 items are not echoed


class Counted:
    """A value that counts how often it is formatted."""

    shown = 0

    def __repr__(self) -> str:
        Counted.shown += 1
        return "counted"


def test_an_error_formats_a_few_items_of_a_huge_value_not_all_of_them():
    Counted.shown = 0
    with pytest.raises(ScenarioError, match="description"):
        load_scenario(scenario_path("cruising")).with_overrides({"description": [Counted()] * 100_000})
    assert Counted.shown <= 10  # cut while formatting, not after formatting all 100,000
