"""`Scenario`: a validated scenario file, the value every family builder, suite and run takes.

It lives apart from the loader so the families (whose builders take one) and the loader (which needs the
families) both build on it without importing each other's modules. A scenario carries the parser that
made it, so `with_overrides` validates again without this module importing the loader.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sim.scenarios.schema import Where


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file. Procedural values are `sim.scenarios.params` objects
    (`Fixed`, `Uniform`, `IntUniform`, `Choice`), drawn per episode by `build_batch`.

    Attributes:
        name, family, description: from the file.
        duration: episode length, s.
        reactive: False is nuPlan's non-reactive mode: every moving agent replays a
            rollout of the scenario without the ego (`sim.nonreactive`).
        road, ego, sensor: parsed sections, keys as in docs/scenarios.md.
        sections: the family's own sections by name (e.g. `sections["traffic"]`).
        source: the file it came from, for error messages.
        document: the file's YAML document, which `with_overrides` edits.
        parse: the parser that made it from `document` (`sim.scenarios.loader.parse_scenario`).
    """

    name: str
    family: str
    description: str
    duration: float
    reactive: bool
    road: Mapping[str, Any]
    ego: Mapping[str, Any]
    sensor: Mapping[str, Any]
    sections: Mapping[str, Mapping[str, Any]]
    source: str
    document: Mapping[str, Any] = field(repr=False, compare=False)
    parse: Callable[[Any, str], Scenario] = field(repr=False, compare=False)

    @property
    def road_type(self) -> str:
        return self.road["type"]

    def param(self, dotted: str) -> Any:
        """The parsed parameter at a dotted key of the family's sections, e.g. "traffic.idm.min_gap"."""
        section, *rest = dotted.split(".")
        node: Any = self.sections[section]
        for part in rest:
            node = node[part]
        return node

    def with_overrides(self, overrides: Mapping[str, Any]) -> Scenario:
        """A copy with dotted keys replaced by YAML-style values, validated again.

        `{"traffic.vehicles": 32, "road.lanes": {"int_uniform": [2, 4]}, "duration": 10}`
        """
        doc = copy.deepcopy(dict(self.document))
        for dotted, value in overrides.items():
            parts = dotted.split(".")
            node = doc
            for depth, part in enumerate(parts[:-1]):
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    Where(self.source, ".".join(parts[: depth + 1])).fail(
                        f"cannot override {dotted!r}: this key holds a value, not a section"
                    )
                node = child
            node[parts[-1]] = copy.deepcopy(value)
        return self.parse(doc, f"{self.source} (with overrides)")
