"""World state of the batched simulator: struct-of-arrays tensors `[B, N, ...]`.

Everything here is in the world frame (x east, y north, yaw counter-clockwise
from +x), SI units. The state is immutable; `sim.step.step(state, action)`
returns a new one. Static per-episode data (the map, agent parameters, replay
logs, sensor settings) rides along in the state so that `step` is a pure
function of `(state, action)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import torch
from torch import Tensor

from core.contracts import ContractError, TensorContract, spec
from sim.config import Capacity
from sim.ego import DEFAULT_EGO


class AgentKind(IntEnum):
    VEHICLE = 0
    PEDESTRIAN = 1
    CYCLIST = 2


class Behaviour(IntEnum):
    """How an agent moves. REPLAY agents are non-reactive (nuPlan's non-reactive mode)."""

    STATIC = 0  # parked or standing still
    IDM = 1  # lane following with IDM, lane changes with MOBIL (vehicles, cyclists)
    REPLAY = 2  # follows `AgentLog` exactly, whatever the ego does
    WALK = 3  # pedestrian walking `walk_from -> walk_to`, may pause on the way


NUM_CLASSES = len(AgentKind)


@dataclass(frozen=True)
class RoadMap(TensorContract):
    """Lanes and routes as polylines, crosswalks, and a world-frame raster.

    Every drivable route is a path: a lane of a multi-lane road, an on-ramp, or a
    turn through an intersection (incoming lane + connector + outgoing lane).
    Parallel lanes are resampled so that point i of a path lies on the same
    cross-section as point i of its left and right neighbours; lane changes map
    arc length between neighbours through that shared index.

    Attributes:
        path_xy: [B, L, P, 2] float, centreline points, m, world frame.
        path_yaw: [B, L, P] float, tangent heading at each point, rad.
        path_s: [B, L, P] float, cumulative arc length from point 0, m.
        path_curvature: [B, L, P] float, signed curvature, 1/m (left turn > 0).
        path_length: [B, L] float, total arc length, m.
        path_width: [B, L] float, lane width, m.
        path_speed_limit: [B, L] float, m/s.
        path_left: [B, L] long, index of the parallel path on the left, -1 if none.
        path_right: [B, L] long, index of the parallel path on the right, -1 if none.
        path_valid: [B, L] bool.
        crosswalk: [B, C, 4, 2] float, crosswalk polygon corners, m, world frame.
        crosswalk_valid: [B, C] bool.
        raster: [B or 1, 3, H, W] uint8, world-frame map raster, channels
            (drivable area, lane centrelines, crosswalks), 255 = present. Row r,
            column c covers the cell whose lower-left corner is
            `raster_origin + (c, r) * raster_resolution`. A leading size of 1 is
            broadcast over the batch (episodes that share a geometry).
        raster_origin: [B, 2] float, world xy of cell (0, 0)'s lower-left corner, m.
        raster_resolution: [B] float, m per cell.
    """

    path_xy: Tensor = spec(("B", "L", "P", 2))
    path_yaw: Tensor = spec(("B", "L", "P"))
    path_s: Tensor = spec(("B", "L", "P"), low=0.0)
    path_curvature: Tensor = spec(("B", "L", "P"))
    path_length: Tensor = spec(("B", "L"), low=0.0)
    path_width: Tensor = spec(("B", "L"), low=0.0)
    path_speed_limit: Tensor = spec(("B", "L"), low=0.0)
    path_left: Tensor = spec(("B", "L"), "long", low=-1)
    path_right: Tensor = spec(("B", "L"), "long", low=-1)
    path_valid: Tensor = spec(("B", "L"), "bool")
    crosswalk: Tensor = spec(("B", "C", 4, 2))
    crosswalk_valid: Tensor = spec(("B", "C"), "bool")
    raster: Tensor = spec(("Bm", 3, "H", "W"), "uint8")
    raster_origin: Tensor = spec(("B", 2))
    raster_resolution: Tensor = spec(("B",), low=1e-3)

    MASK_FIELD = "path_valid"

    def _check(self, sizes: dict[str, int]) -> None:
        if sizes["Bm"] not in (1, sizes["B"]):
            raise ContractError(f"RoadMap.raster: leading dim must be 1 or B={sizes['B']}, got {sizes['Bm']}")
        L = sizes["L"]
        for name in ("path_left", "path_right"):
            if bool((getattr(self, name) >= L).any()):
                raise ContractError(f"RoadMap.{name}: expected indices in [-1, {L - 1}]")


@dataclass(frozen=True)
class EgoState(TensorContract):
    """The ego vehicle: a kinematic bicycle (reference point: rear axle centre).

    Attributes:
        xy: [B, 2] float, rear-axle position, m, world frame.
        yaw: [B] float, heading, rad.
        speed: [B] float, longitudinal speed, m/s (>= 0; the ego never reverses).
        accel: [B] float, longitudinal acceleration applied in the last step, m/s^2.
        steer: [B] float, front-wheel steering angle applied in the last step, rad.
        yaw_rate: [B] float, rad/s, from the last step.
        length: [B] float, m.
        width: [B] float, m.
        wheelbase: [B] float, m.
        route: [B] long, index of the ego's route in `RoadMap.path_*`.
        progress: [B] float, arc length of the box centre's projection on the route,
            m from the route's start (`sim.geometry.ego_center`).
    """

    xy: Tensor = spec(("B", 2))
    yaw: Tensor = spec(("B",))
    speed: Tensor = spec(("B",), low=0.0)
    accel: Tensor = spec(("B",))
    steer: Tensor = spec(("B",))
    yaw_rate: Tensor = spec(("B",))
    length: Tensor = spec(("B",), low=0.0)
    width: Tensor = spec(("B",), low=0.0)
    wheelbase: Tensor = spec(("B",), low=0.0)
    route: Tensor = spec(("B",), "long", low=0)
    progress: Tensor = spec(("B",))


@dataclass(frozen=True)
class AgentState(TensorContract):
    """Dynamic state of the other road users; slot n of episode b is in use iff `valid`.

    Attributes:
        xy: [B, N, 2] float, box centre, m, world frame.
        yaw: [B, N] float, heading, rad.
        speed: [B, N] float, speed along the heading, m/s.
        accel: [B, N] float, longitudinal acceleration in the last step, m/s^2.
        length: [B, N] float, box length, m.
        width: [B, N] float, box width, m.
        height: [B, N] float, box height, m (the sensor's height channel).
        kind: [B, N] long, `AgentKind`.
        behaviour: [B, N] long, `Behaviour`.
        valid: [B, N] bool, slot in use and present in the scene at this step.
        path: [B, N] long, path followed by IDM agents (lane-following), else any.
        s: [B, N] float, arc length along `path`, m.
        d: [B, N] float, lateral offset from `path` (left > 0), m; nonzero while
            a lane change settles.
        lane_change_cooldown: [B, N] float, s until another lane change is allowed.
    """

    xy: Tensor = spec(("B", "N", 2))
    yaw: Tensor = spec(("B", "N"))
    speed: Tensor = spec(("B", "N"))
    accel: Tensor = spec(("B", "N"))
    length: Tensor = spec(("B", "N"), low=0.0)
    width: Tensor = spec(("B", "N"), low=0.0)
    height: Tensor = spec(("B", "N"), low=0.0)
    kind: Tensor = spec(("B", "N"), "long", low=0, high=NUM_CLASSES - 1)
    behaviour: Tensor = spec(("B", "N"), "long", low=0, high=len(Behaviour) - 1)
    valid: Tensor = spec(("B", "N"), "bool")
    path: Tensor = spec(("B", "N"), "long")
    s: Tensor = spec(("B", "N"))
    d: Tensor = spec(("B", "N"))
    lane_change_cooldown: Tensor = spec(("B", "N"))

    MASK_FIELD = "valid"


@dataclass(frozen=True)
class AgentParams(TensorContract):
    """Per-agent constants for the whole episode.

    Attributes:
        desired_speed: [B, N] float, IDM v0 or walking speed, m/s.
        time_headway: [B, N] float, IDM T, s.
        min_gap: [B, N] float, IDM s0, m.
        max_accel: [B, N] float, IDM a, m/s^2.
        comfort_decel: [B, N] float, IDM b, m/s^2 (> 0).
        politeness: [B, N] float, MOBIL p in [0, 1]; lane changes are off when < 0.
        yields_to_ego: [B, N] bool, the agent treats the ego as an obstacle
            (reactive); False for agents that ignore it.
        walk_from: [B, N, 2] float, start of a WALK agent's straight walk, m.
        walk_to: [B, N, 2] float, end of the walk, m; the agent stops there.
        start_time: [B, N] float, s, when a WALK agent starts (stands before it).
        pause_at: [B, N] float, fraction of the walk in [0, 1] at which it pauses
            (> 1 means never).
        pause_duration: [B, N] float, s.
        appear_time: [B, N] float, s, when the slot becomes valid (0 = from the start).
    """

    desired_speed: Tensor = spec(("B", "N"), low=0.0)
    time_headway: Tensor = spec(("B", "N"), low=0.0)
    min_gap: Tensor = spec(("B", "N"), low=0.0)
    max_accel: Tensor = spec(("B", "N"), low=0.0)
    comfort_decel: Tensor = spec(("B", "N"), low=0.0)
    politeness: Tensor = spec(("B", "N"))
    yields_to_ego: Tensor = spec(("B", "N"), "bool")
    walk_from: Tensor = spec(("B", "N", 2))
    walk_to: Tensor = spec(("B", "N", 2))
    start_time: Tensor = spec(("B", "N"))
    pause_at: Tensor = spec(("B", "N"))
    pause_duration: Tensor = spec(("B", "N"), low=0.0)
    appear_time: Tensor = spec(("B", "N"))


@dataclass(frozen=True)
class AgentLog(TensorContract):
    """Recorded trajectories replayed by REPLAY agents, one entry per sim step.

    Attributes:
        xy: [B, N, TL, 2] float, m, world frame.
        yaw: [B, N, TL] float, rad.
        valid: [B, N, TL] bool, the agent is present at that step.
    """

    xy: Tensor = spec(("B", "N", "TL", 2))
    yaw: Tensor = spec(("B", "N", "TL"))
    valid: Tensor = spec(("B", "N", "TL"), "bool")


@dataclass(frozen=True)
class SensorSettings(TensorContract):
    """Per-episode sensor noise; every draw is a pure function of (seed, step, slot).

    Attributes:
        range: [B] float, sensing radius, m.
        position_jitter: [B] float, std of the position noise, m.
        miss_prob: [B] float, probability that a visible object is missed in a frame.
        ghost_rate: [B] float, expected false positives per frame (Poisson-like,
            capped at `Capacity.ghosts`).
        raster_noise: [B] float, probability that an empty cell lights up.
    """

    range: Tensor = spec(("B",), low=0.0)
    position_jitter: Tensor = spec(("B",), low=0.0)
    miss_prob: Tensor = spec(("B",), prob=True)
    ghost_rate: Tensor = spec(("B",), low=0.0)
    raster_noise: Tensor = spec(("B",), prob=True)


@dataclass(frozen=True)
class WorldState:
    """Everything the simulator knows at one step, for B episodes at once.

    Attributes:
        step: [B] long, sim steps since the episode started.
        seed: [B] long, the episode's seed; all noise derives from it.
        dt: sim step, s (a Python float: same for the whole batch).
        ego, agents, params, log, map, sensor: see their classes.
    """

    step: Tensor
    seed: Tensor
    dt: float
    ego: EgoState
    agents: AgentState
    params: AgentParams
    log: AgentLog
    map: RoadMap
    sensor: SensorSettings

    @property
    def batch_size(self) -> int:
        return int(self.step.shape[0])

    @property
    def num_agents(self) -> int:
        return int(self.agents.valid.shape[1])

    @property
    def device(self) -> torch.device:
        return self.step.device

    @property
    def time(self) -> Tensor:
        """[B] float, seconds since the episode started."""
        return self.step.to(self.ego.speed.dtype) * self.dt

    def validate(self) -> WorldState:
        B = self.batch_size
        if self.step.shape != (B,) or self.seed.shape != (B,):
            raise ContractError(f"WorldState.step/seed: expected shape [{B}]")
        dims = {"B": B}
        self.ego.validate(dims)
        n = {"B": B, "N": self.num_agents}
        self.agents.validate(n)
        self.params.validate(n)
        self.log.validate(n)
        self.map.validate(dims)
        self.sensor.validate(dims)
        return self

    def to(self, device: torch.device | str) -> WorldState:
        return WorldState(
            step=self.step.to(device),
            seed=self.seed.to(device),
            dt=self.dt,
            ego=self.ego.to(device),
            agents=self.agents.to(device),
            params=self.params.to(device),
            log=self.log.to(device),
            map=self.map.to(device),
            sensor=self.sensor.to(device),
        )


def _zeros(*shape: int, device: torch.device | str = "cpu") -> Tensor:
    return torch.zeros(shape, dtype=torch.float32, device=device)


def empty_world(
    batch: int,
    capacity: Capacity,
    *,
    raster_cells: int = 64,
    dt: float = 0.1,
    device: torch.device | str = "cpu",
) -> WorldState:
    """A world with every agent slot and path invalid; builders fill it in.

    Defaults are harmless values (unit sizes, zero speeds) so that partially
    filled worlds still validate.
    """
    B, N, L, P = batch, capacity.agents, capacity.paths, capacity.path_points
    C, TL = capacity.crosswalks, capacity.log_steps
    z, dev = _zeros, device
    ones = lambda *s: torch.ones(s, dtype=torch.float32, device=dev)  # noqa: E731
    longs = lambda fill, *s: torch.full(s, fill, dtype=torch.long, device=dev)  # noqa: E731
    bools = lambda *s: torch.zeros(s, dtype=torch.bool, device=dev)  # noqa: E731
    path_s = torch.linspace(0, 1, P, device=dev).expand(B, L, P).contiguous()
    roadmap = RoadMap(
        path_xy=z(B, L, P, 2, device=dev),
        path_yaw=z(B, L, P, device=dev),
        path_s=path_s,
        path_curvature=z(B, L, P, device=dev),
        path_length=ones(B, L),
        path_width=ones(B, L) * 3.5,
        path_speed_limit=ones(B, L) * 13.9,
        path_left=longs(-1, B, L),
        path_right=longs(-1, B, L),
        path_valid=bools(B, L),
        crosswalk=z(B, C, 4, 2, device=dev),
        crosswalk_valid=bools(B, C),
        raster=torch.zeros(1, 3, raster_cells, raster_cells, dtype=torch.uint8, device=dev),
        raster_origin=z(B, 2, device=dev),
        raster_resolution=ones(B) * 0.5,
    )
    ego = EgoState(
        xy=z(B, 2, device=dev),
        yaw=z(B, device=dev),
        speed=z(B, device=dev),
        accel=z(B, device=dev),
        steer=z(B, device=dev),
        yaw_rate=z(B, device=dev),
        length=ones(B) * DEFAULT_EGO.length,
        width=ones(B) * DEFAULT_EGO.width,
        wheelbase=ones(B) * DEFAULT_EGO.wheelbase,
        route=longs(0, B),
        progress=z(B, device=dev),
    )
    agents = AgentState(
        xy=z(B, N, 2, device=dev),
        yaw=z(B, N, device=dev),
        speed=z(B, N, device=dev),
        accel=z(B, N, device=dev),
        length=ones(B, N),
        width=ones(B, N),
        height=ones(B, N),
        kind=longs(int(AgentKind.VEHICLE), B, N),
        behaviour=longs(int(Behaviour.STATIC), B, N),
        valid=bools(B, N),
        path=longs(0, B, N),
        s=z(B, N, device=dev),
        d=z(B, N, device=dev),
        lane_change_cooldown=z(B, N, device=dev),
    )
    params = AgentParams(
        desired_speed=z(B, N, device=dev),
        time_headway=ones(B, N) * 1.5,
        min_gap=ones(B, N) * 2.0,
        max_accel=ones(B, N) * 1.5,
        comfort_decel=ones(B, N) * 2.0,
        politeness=-ones(B, N),
        yields_to_ego=torch.ones(B, N, dtype=torch.bool, device=dev),
        walk_from=z(B, N, 2, device=dev),
        walk_to=z(B, N, 2, device=dev),
        start_time=z(B, N, device=dev),
        pause_at=ones(B, N) * 2.0,
        pause_duration=z(B, N, device=dev),
        appear_time=z(B, N, device=dev),
    )
    log = AgentLog(xy=z(B, N, TL, 2, device=dev), yaw=z(B, N, TL, device=dev), valid=bools(B, N, TL))
    sensor = SensorSettings(
        range=ones(B) * 50.0,
        position_jitter=z(B, device=dev),
        miss_prob=z(B, device=dev),
        ghost_rate=z(B, device=dev),
        raster_noise=z(B, device=dev),
    )
    return WorldState(
        step=longs(0, B),
        seed=torch.arange(B, dtype=torch.long, device=dev),
        dt=dt,
        ego=ego,
        agents=agents,
        params=params,
        log=log,
        map=roadmap,
        sensor=sensor,
    )
