"""Contracts owned by the simulator: what a policy observes each step.

Stack tensors live in the ego frame at the current time: x forward, y left,
yaw counter-clockwise, SI units. Only `SensorFrame.ego_pose` is in the world
frame (it is the localisation output a tracker needs for ego-motion).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from core.contracts import TensorContract, spec
from sim.state import NUM_CLASSES

BEV_CHANNELS = ("occupancy", "height")
MAP_CHANNELS = ("drivable", "lanes", "crosswalks")


@dataclass(frozen=True)
class SensorFrame(TensorContract):
    """One sensor frame per episode: rasters in the ego frame plus ego state.

    Raster row 0 is the far front; the ego sits at row `RasterConfig.ego_row_fraction * H`,
    column W/2, facing up (towards row 0); column index grows to the ego's right.

    Attributes:
        bev: [B, 2, H, W] float, lidar-like bird's-eye raster: channel 0 is 1 where
            a visible surface was hit (occlusion by ray casting), channel 1 the
            height of that surface in m (0 elsewhere).
        map: [B, 3, H, W] float in [0, 1]: drivable area, lane centrelines, crosswalks.
        ego_speed: [B] float, m/s.
        ego_accel: [B] float, longitudinal acceleration, m/s^2.
        ego_yaw_rate: [B] float, rad/s.
        ego_pose: [B, 3] float, world-frame (x m, y m, yaw rad) from localisation.
        route: [B, R, 2] float, the ego's route centreline ahead, m, ego frame,
            points every `route_spacing` m along the route starting at the ego.
        route_valid: [B, R] bool, false past the route's end.
        lanes: [B, N, P, 2] float, centrelines of the N nearest lanes of the HD map, m, ego frame,
            each P points in its direction of travel (`sim.sensors.lanes`: 16 lanes of 24 points
            3 m apart, placed where the ego looks: from 20 m behind the ego on a lane running its
            way, from 49 m ahead on an oncoming one); 0 where not valid.
        lanes_valid: [B, N, P] bool, the point exists (on a lane passing within 40 m of the ego).
        speed_limit: [B] float, speed limit of the route, m/s.
        time: [B] float, s since the episode started.
    """

    bev: Tensor = spec(("B", 2, "H", "W"), low=0.0)
    map: Tensor = spec(("B", 3, "H", "W"), prob=True)
    ego_speed: Tensor = spec(("B",), low=0.0)
    ego_accel: Tensor = spec(("B",))
    ego_yaw_rate: Tensor = spec(("B",))
    ego_pose: Tensor = spec(("B", 3))
    route: Tensor = spec(("B", "R", 2))
    route_valid: Tensor = spec(("B", "R"), "bool")
    lanes: Tensor = spec(("B", "N", "P", 2))
    lanes_valid: Tensor = spec(("B", "N", "P"), "bool")
    speed_limit: Tensor = spec(("B",), low=0.0)
    time: Tensor = spec(("B",), low=0.0)


@dataclass(frozen=True)
class ObjectList(TensorContract):
    """Objects in the ego frame: ground-truth labels or an object-level sensor's output.

    Ground truth has `score` 1 and `agent_id` >= 0 for every valid slot; the
    noisy object sensor jitters positions, drops objects and adds ghosts
    (`agent_id` = -1) whose `score` is a confidence in [0, 1].

    Attributes:
        xy: [B, M, 2] float, box centre, m, ego frame.
        yaw: [B, M] float, heading in the ego frame, rad.
        velocity: [B, M, 2] float, m/s, ego frame (absolute velocity, rotated).
        length: [B, M] float, m.
        width: [B, M] float, m.
        kind: [B, M] long, `AgentKind`.
        score: [B, M] float in [0, 1], detection confidence.
        visible: [B, M] bool, not fully occluded and within sensor range.
        agent_id: [B, M] long, simulator slot of the object, -1 for a ghost.
        valid: [B, M] bool, slot in use.
    """

    xy: Tensor = spec(("B", "M", 2))
    yaw: Tensor = spec(("B", "M"))
    velocity: Tensor = spec(("B", "M", 2))
    length: Tensor = spec(("B", "M"), low=0.0)
    width: Tensor = spec(("B", "M"), low=0.0)
    kind: Tensor = spec(("B", "M"), "long", low=0, high=NUM_CLASSES - 1)
    score: Tensor = spec(("B", "M"), prob=True)
    visible: Tensor = spec(("B", "M"), "bool")
    agent_id: Tensor = spec(("B", "M"), "long", low=-1)
    valid: Tensor = spec(("B", "M"), "bool")

    MASK_FIELD = "valid"
