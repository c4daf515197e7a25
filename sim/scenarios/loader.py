"""Scenario files: YAML, one scenario per file, validated into a frozen `Scenario`.

    scenario = load_scenario("sim/scenarios/data/cruising.yaml")
    denser = scenario.with_overrides({"traffic.vehicles": 24, "road.lanes": 3})

Errors name the file, the key path and what was expected (ScenarioError).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sim.scenarios.families import FAMILIES
from sim.scenarios.family import MAX_AGENT_SLOTS
from sim.scenarios.params import lower, upper
from sim.scenarios.scenario import Scenario
from sim.scenarios.schema import ScenarioError, Where, flag, num, parse_section, section, text
from sim.scenarios.sections import EGO_FIELDS, ROAD_FIELDS, ROAD_TYPES, SENSOR_FIELDS

DATA_DIR = Path(__file__).parent / "data"
MAX_CURVE_SWEEP = 1.5 * math.pi  # rad; a longer arc would curl back over itself


def scenario_path(name: str) -> Path:
    """The packaged scenario file `sim/scenarios/data/<name>.yaml`."""
    path = DATA_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ScenarioError(f"no packaged scenario {name!r}; available: {', '.join(packaged_scenarios())}")
    return path


def packaged_scenarios() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.yaml"))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file."""
    path = Path(path)
    return parse_scenario(read_yaml(read_text_file(path, "scenario"), str(path)), str(path))


# Scenario and suite files are a few kilobytes; anything far larger is not one, and is not read whole.
MAX_FILE_BYTES = 1 << 20


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of a scenario or suite file; any reason it cannot be read is a `ScenarioError` naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read {what} file ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(f"{path}: larger than {MAX_FILE_BYTES >> 10} KiB; not a {what} file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not a UTF-8 text {what} file (byte {exc.start} cannot be decoded)") from None


_NO_ALIASES = (
    "anchors and aliases (&name, *name) are not allowed: write each value out "
    "(yaml.safe_dump writes them for an object listed twice: dump copies)"
)


class _NoAliasLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses anchors and aliases (`&name`, `*name`): nested aliases expand
    exponentially (a "billion laughs" file of a few hundred bytes fills the memory), and a scenario has no
    use for them (`Scenario.with_overrides` and suites cover reuse)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, _NO_ALIASES, event.start_mark)
        return super().compose_node(parent, index)


def read_yaml(source: str, where: str) -> Any:
    """Parse `source` (read from `where`) as YAML without anchors or aliases."""
    try:
        return yaml.load(source, Loader=_NoAliasLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{where}: malformed YAML{at}: {problem}") from exc


def parse_scenario(doc: Any, source: str) -> Scenario:
    """Validate a parsed YAML document; `source` names it in errors."""
    top = Where(source)
    if not isinstance(doc, dict):
        top.fail(
            f"expected a mapping with keys name, family, description, duration, road, ego, ...; "
            f"got {type(doc).__name__}"
        )
    family_name = doc.get("family")
    if family_name not in FAMILIES:
        top.child("family").fail(f"expected one of {sorted(FAMILIES)}, got {family_name!r}")
    family = FAMILIES[family_name]
    road_type = _road_type(doc.get("road"), top.child("road"))
    if road_type not in family.road_types:
        top.child("road").child("type").fail(
            f"family {family.name!r} runs on {list(family.road_types)}, got {road_type!r}"
        )
    fields = {
        "name": text("scenario name"),
        "family": text("scenario family", options=tuple(sorted(FAMILIES))),
        "description": text("what the scenario tests"),
        "duration": num("episode length, s", low=0.5, high=600.0, random=False),
        "reactive": flag("agents react to the ego", True, random=False),
        "road": section("road layout", ROAD_FIELDS[road_type]),
        "ego": section("ego vehicle", EGO_FIELDS[road_type]),
        "sensor": section("sensor noise", SENSOR_FIELDS),
        **family.sections,
    }
    parsed = parse_section(doc, fields, top)
    scenario = Scenario(
        name=parsed["name"],
        family=family.name,
        description=parsed["description"],
        duration=parsed["duration"],
        reactive=parsed["reactive"],
        road=parsed["road"],
        ego=parsed["ego"],
        sensor=parsed["sensor"],
        sections={key: parsed[key] for key in family.sections},
        source=source,
        document=copy.deepcopy(doc),
        parse=parse_scenario,
    )
    check_geometry(scenario, top)
    if family.check is not None:
        family.check(scenario, top)
    slots = family.slots(scenario)
    if slots > MAX_AGENT_SLOTS:
        top.fail(
            f"the scenario asks for up to {slots} agents, more than the simulator's capacity of "
            f"{MAX_AGENT_SLOTS}; lower the agent counts"
        )
    return scenario


def _road_type(road: Any, where: Where) -> str:
    if not isinstance(road, dict):
        where.fail(f"expected a mapping with a 'type' key, got {type(road).__name__}")
    kind = road.get("type")
    if kind not in ROAD_TYPES:
        where.child("type").fail(f"expected one of {list(ROAD_TYPES)}, got {kind!r}")
    return kind


def check_geometry(scenario: Scenario, top: Where) -> None:
    """Cross-key checks that every value a distribution can draw gives a valid layout."""
    road, ego, kind = scenario.road, scenario.ego, scenario.road_type
    at_road, at_ego = top.child("road"), top.child("ego")
    if upper(ego["wheelbase"]) >= lower(ego["length"]):
        at_ego.child("wheelbase").fail(
            f"expected < ego.length (min {lower(ego['length'])}), got up to {upper(ego['wheelbase'])}"
        )
    if upper(ego["lane"]) >= lower(road["lanes"]):
        at_ego.child("lane").fail(
            f"expected a lane below road.lanes (min {lower(road['lanes'])}), got up to {upper(ego['lane'])}"
        )
    if kind in ("straight", "curved"):
        _check_parallel(road, ego, at_road, at_ego)
    elif kind == "merge":
        if lower(road["merge_s"]) - upper(road["ramp_length"]) < 0:
            at_road.child("merge_s").fail("expected merge_s >= ramp_length so the ramp starts at x >= 0")
        if upper(road["merge_s"]) >= lower(road["length"]):
            at_road.child("merge_s").fail(f"expected < road.length (min {lower(road['length'])})")
        shortest = lower(road["length"]) - upper(road["merge_s"])
        if upper(ego["s"]) >= shortest:
            at_ego.child("s").fail(f"expected < {shortest:g} m, the shortest route length")
    elif upper(ego["s"]) >= 2 * lower(road["arm_length"]):
        at_ego.child("s").fail(f"expected < 2 * road.arm_length (min {2 * lower(road['arm_length']):g} m)")


def _check_parallel(road: Mapping, ego: Mapping, at_road: Where, at_ego: Where) -> None:
    length = lower(road["length"])
    if upper(ego["s"]) >= length:
        at_ego.child("s").fail(f"expected < road.length (min {length:g} m), got up to {upper(ego['s']):g}")
    if road["crosswalk_s"] is not None and upper(road["crosswalk_s"]) >= length:
        at_road.child("crosswalk_s").fail(f"expected < road.length (min {length:g} m)")
    if "radius" not in road:
        return
    width = (upper(road["lanes"]) + upper(road["oncoming_lanes"])) * upper(road["lane_width"]) + upper(
        road["shoulder_width"]
    )
    if lower(road["radius"]) <= width:
        at_road.child("radius").fail(f"expected > the road width ({width:g} m)")
    sweep = upper(road["length"]) / lower(road["radius"])
    if sweep > MAX_CURVE_SWEEP:
        at_road.child("radius").fail(
            f"expected length / radius <= {MAX_CURVE_SWEEP:.2f} rad "
            f"(the arc would curl over itself), got up to {sweep:.2f}"
        )
