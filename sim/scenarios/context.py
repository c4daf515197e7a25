"""What a family builder sees: the drawn road, the ego, and keyed draws for its own keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sim.roads import RoadGeometry
from sim.scenarios.params import Draws, Param, upper
from sim.scenarios.scenario import Scenario
from sim.state import EgoState, RoadMap


@dataclass(frozen=True)
class BuildContext:
    """One batch being built.

    Attributes:
        scenario: the scenario.
        draws: keyed draws for the batch's seeds.
        roadmap: the batched map `[B, ...]`.
        geoms: unique road layouts; episode b uses `geoms[episode_geom[b]]`.
        road_values: per episode, the drawn road parameters (Python values).
        ego: the ego at t = 0; `ego_s [B]` its rear axle's arc length on `ego.route`.
        steps: episode length in sim steps; `log_steps` the replay-log length TL.
        dt: sim step, s.
    """

    scenario: Scenario
    draws: Draws
    roadmap: RoadMap
    geoms: tuple[RoadGeometry, ...]
    episode_geom: tuple[int, ...]
    road_values: tuple[Mapping[str, Any], ...]
    ego: EgoState
    ego_s: Tensor
    steps: int
    log_steps: int
    dt: float

    @property
    def batch(self) -> int:
        return self.draws.batch

    def param(self, dotted: str) -> Param:
        """The parsed parameter at a dotted key of the family's sections, e.g. "traffic.idm.min_gap"."""
        return self.scenario.param(dotted)

    def sample(self, dotted: str, shape: tuple[int, ...] = ()) -> Tensor:
        """Draw `[B, *shape]` of a family parameter; numbers come back as float32/long."""
        values = self.draws.sample(self.param(dotted), f"{self.scenario.family}.{dotted}", shape)
        return values.float() if values.is_floating_point() else values

    def upper(self, dotted: str) -> Any:
        return upper(self.param(dotted))

    def road(self, key: str) -> Tensor:
        """Drawn road parameter per episode, `[B]` float32."""
        return torch.tensor([float(v[key]) for v in self.road_values], dtype=torch.float32)

    def path_index(self, names: Sequence[str | None]) -> Tensor:
        """Path index `[B]` of a named path per episode (e.g. "lane/1"); -1 where the
        name is None or the episode's road has no such path."""
        out = []
        for b, name in enumerate(names):
            routes = self.geoms[self.episode_geom[b]].routes
            out.append(routes.get(name, -1) if name is not None else -1)
        return torch.tensor(out, dtype=torch.long)
