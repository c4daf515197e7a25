"""One frame's view of the world: the boxes in the ego frame and their scan.

Both the raster (`render_frame`) and the object list (`detect_objects`) are
built from `observe_noisy`, so they agree on misses, ghosts and jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.config import Capacity, RasterConfig
from sim.sensors.noise import Ghosts, ObjectNoise, apply_object_noise, draw_ghosts, draw_object_noise
from sim.sensors.pose import SensorPose
from sim.sensors.scan import Scan, scan
from sim.sensors.scene import agents_in_ego_frame
from sim.state import WorldState

DEFAULT_GHOST_SLOTS = Capacity().ghosts


@dataclass(frozen=True)
class TrueReading:
    """What an exact sensor reads (named apart from `sim.policies.Observation`, a policy's input).

    Attributes:
    pose: the sensor's world pose.
    scan: the N agent slots.
    """

    pose: SensorPose
    scan: Scan


@dataclass(frozen=True)
class NoisyReading:
    """Attributes:
    pose: the sensor's world pose.
    scan: the N agent slots, then the G ghost slots.
    noise: the per-agent noise drawn.
    ghosts: the ghosts drawn.
    """

    pose: SensorPose
    scan: Scan
    noise: ObjectNoise
    ghosts: Ghosts


def observe_truth(state: WorldState, raster: RasterConfig) -> TrueReading:
    """Exact boxes, exact occlusion: no jitter, misses or ghosts."""
    pose = SensorPose.of(state.ego)
    objects = agents_in_ego_frame(state, pose)
    return TrueReading(pose=pose, scan=scan(objects, state.sensor.range, raster))


def observe_noisy(state: WorldState, raster: RasterConfig, ghost_slots: int) -> NoisyReading:
    """Jittered agents (missed ones still block rays) plus `ghost_slots` ghost slots."""
    if ghost_slots < 0:
        raise ValueError(f"ghost_slots: expected an int >= 0, got {ghost_slots!r}")
    pose = SensorPose.of(state.ego)
    noise = draw_object_noise(state)
    objects = apply_object_noise(agents_in_ego_frame(state, pose), noise)
    ghosts = draw_ghosts(state, ghost_slots)
    sensed = scan(objects.cat(ghosts.objects), state.sensor.range, raster)
    return NoisyReading(pose=pose, scan=sensed, noise=noise, ghosts=ghosts)
