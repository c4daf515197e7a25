"""What a scenario family is: its file sections, the road types it runs on, and its builder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.scenarios.schema import Field, Where

if TYPE_CHECKING:
    from sim.scenarios.agents import Block
    from sim.scenarios.context import BuildContext
    from sim.scenarios.loader import Scenario


@dataclass(frozen=True)
class Family:
    """A registered scenario family.

    Attributes:
        name: the `family:` value in a scenario file.
        summary: one line for listings and docs.
        road_types: road layouts the family can run on.
        sections: top-level file sections the family adds (e.g. `traffic`), with their schemas.
        build: the builder, `build(ctx) -> list[Block]`; it places every non-ego agent.
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
    replays: bool = False
    check: Callable[[Scenario, Where], None] | None = None
