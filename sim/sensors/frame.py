"""`render_frame`: the SensorFrame a policy observes at one step."""

from __future__ import annotations

from sim.config import RasterConfig
from sim.sensors.lanes import lanes_near
from sim.sensors.noise import draw_salt
from sim.sensors.objects import detections_from
from sim.sensors.observe import DEFAULT_GHOST_SLOTS, NoisyReading, observe_noisy
from sim.sensors.raster import render_bev, render_map
from sim.sensors.route import route_ahead
from sim.state import WorldState
from sim.types import ObjectList, SensorFrame


def render_frame(
    state: WorldState,
    raster: RasterConfig = RasterConfig(),
    route_points: int = 50,
    route_spacing: float = 2.0,
    ghost_slots: int = DEFAULT_GHOST_SLOTS,
) -> SensorFrame:
    """Lidar-like BEV with occlusion and noise, the map, the route, the lanes near and the ego state.

    Every random draw is keyed by (seed, step, stream, slot), so the frame of
    an episode is a pure function of its state, whatever else is in the batch.
    """
    return frame_from(state, observe_noisy(state, raster, ghost_slots), raster, route_points, route_spacing)


def frame_from(
    state: WorldState, seen: NoisyReading, raster: RasterConfig, route_points: int = 50, route_spacing: float = 2.0
) -> SensorFrame:
    """The SensorFrame of an already computed noisy scan (shared with `detect_objects`)."""
    if route_points < 1:
        raise ValueError(f"route_points: expected an int >= 1, got {route_points!r}")
    if not route_spacing > 0:
        raise ValueError(f"route_spacing: expected a spacing > 0 m, got {route_spacing!r}")
    route = route_ahead(state, seen.pose, route_points, route_spacing)
    lanes = lanes_near(state.map, seen.pose)
    dtype = state.ego.speed.dtype
    return SensorFrame(
        bev=render_bev(seen.scan, draw_salt(state, raster), raster),
        map=render_map(state.map, seen.pose, raster),
        ego_speed=state.ego.speed,
        ego_accel=state.ego.accel,
        ego_yaw_rate=state.ego.yaw_rate,
        ego_pose=seen.pose.pose3().to(dtype),
        route=route.points.to(dtype),
        route_valid=route.valid,
        lanes=lanes.points.to(dtype),
        lanes_valid=lanes.valid,
        speed_limit=route.speed_limit,
        time=state.time,
    )


def frame_and_detections(
    state: WorldState, raster: RasterConfig = RasterConfig(), ghost_slots: int = DEFAULT_GHOST_SLOTS
) -> tuple[SensorFrame, ObjectList]:
    """`render_frame` and `detect_objects` of the same state from one noisy scan (half the work)."""
    seen = observe_noisy(state, raster, ghost_slots)
    return frame_from(state, seen, raster), detections_from(state, seen)
