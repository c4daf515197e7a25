"""What a scenario family is: its file sections, the road types it runs on, and its builder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sim.scenarios.params import upper
from sim.scenarios.scenario import Scenario
from sim.scenarios.schema import Field, Where

# Pairwise agent interactions cost O(N^2) per step and in the start-overlap check; past this a scenario is a
# mistake (200 groups of 64 walkers asked for 2.6 GB in that check before it was refused at load).
MAX_AGENT_SLOTS = 256

if TYPE_CHECKING:
    from sim.scenarios.agents import Block
    from sim.scenarios.context import BuildContext


@dataclass(frozen=True)
class Family:
    """A registered scenario family.

    Attributes:
        name: the `family:` value in a scenario file.
        summary: one line for listings and docs.
        road_types: road layouts the family can run on.
        sections: top-level file sections the family adds (e.g. `traffic`), with their schemas.
        build: the builder, `build(ctx) -> list[Block]`; it places every non-ego agent.
        slots: the most agent slots `build` fills for a scenario, from its counts at their largest;
            checked against `MAX_AGENT_SLOTS` when the file is loaded (`counted` makes one).
        replays: whether the family scripts REPLAY agents (then the replay log spans
            the episode: `log_steps` = episode steps + 1).
        check: cross-field checks beyond the schema, `check(scenario, where)`; raises
            through `where.fail` naming the key.
    """

    name: str
    summary: str
    road_types: tuple[str, ...]
    sections: Mapping[str, Field]
    build: Callable[[BuildContext], list[Block]]
    slots: Callable[[Scenario], int]
    replays: bool = False
    check: Callable[[Scenario, Where], None] | None = None


def counted(*counts: str, scripted: int = 0) -> Callable[[Scenario], int]:
    """`Family.slots` for a family whose agents are the count parameters at the dotted keys `counts`
    (e.g. "traffic.vehicles") at their largest, plus `scripted` agents it always places."""

    def slots(scenario: Scenario) -> int:
        return scripted + sum(largest_count(scenario.param(key)) for key in counts)

    return slots


def largest_count(value: Any) -> int:
    """The largest value of a count: a drawn parameter's upper bound, or a fixed (`random=False`) int."""
    return int(value) if isinstance(value, int) else int(upper(value))
