"""Object-level outputs: exact labels (`ground_truth`) and a noisy object sensor.

`detect_objects` reports what `render_frame` of the same state draws: the same
jittered boxes, the same misses and the same ghosts.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sim.config import RasterConfig
from sim.sensors.noise import ObjectNoise
from sim.sensors.observe import DEFAULT_GHOST_SLOTS, NoisyReading, observe_noisy, observe_truth
from sim.sensors.scan import Scan
from sim.state import NUM_CLASSES, WorldState
from sim.types import ObjectList

# At most about half of a box's outline faces the sensor, so a box is as well
# seen as it can be when half its outline returns.
FULLY_SEEN_FRACTION = 0.5
# Real detections score in [0.5, 1): the floor of a poorly seen, far object.
REAL_SCORE_FLOOR = 0.5


def _object_list(scan: Scan, score: Tensor, agent_id: Tensor, valid: Tensor, dtype: torch.dtype) -> ObjectList:
    o = scan.objects
    return ObjectList(
        xy=o.xy.to(dtype),
        yaw=o.yaw.to(dtype),
        velocity=o.velocity.to(dtype),
        length=o.length.to(dtype),
        width=o.width.to(dtype),
        kind=o.kind.clamp(0, NUM_CLASSES - 1),
        score=score.to(dtype),
        visible=scan.visible,
        agent_id=agent_id,
        valid=valid,
    )


def ground_truth(state: WorldState, raster: RasterConfig = RasterConfig()) -> ObjectList:
    """Every valid agent in the ego frame with score 1; `visible` from noise-free ray casting.

    M = N; slot m is agent slot m (`agent_id` = m).
    """
    seen = observe_truth(state, raster)
    valid = state.agents.valid
    agent_id = torch.arange(state.num_agents, device=state.device).expand_as(valid)
    return _object_list(seen.scan, valid.float(), agent_id, valid, state.ego.speed.dtype)


def _real_scores(scan: Scan, noise: ObjectNoise, sensor_range: Tensor) -> Tensor:
    """[B, N] confidences in [0.5, 1), lower for far and poorly seen objects."""
    N = noise.missed.shape[1]
    reach = sensor_range.to(scan.distance.dtype).clamp_min(1e-6).unsqueeze(1)  # (B, 1)
    nearness = 1.0 - scan.distance[:, :N] / reach
    exposure = scan.seen_fraction[:, :N] / FULLY_SEEN_FRACTION
    quality = nearness.clamp(0.0, 1.0) * exposure.clamp(0.0, 1.0)  # (B, N) in [0, 1]
    spread = 0.75 + 0.25 * noise.score_draw  # in [0.75, 1): keeps scores below 1
    return REAL_SCORE_FLOOR + (1.0 - REAL_SCORE_FLOOR) * quality * spread


def detect_objects(
    state: WorldState,
    raster: RasterConfig = RasterConfig(),
    ghost_slots: int = DEFAULT_GHOST_SLOTS,
) -> ObjectList:
    """Noisy object sensor: M = N + G slots (agents, then ghosts).

    A real slot is reported (`valid`) when the agent is visible in the noisy
    scan and not missed; its position and velocity carry the frame's jitter.
    Ghost slots (`agent_id` -1) are reported when active and visible, with
    scores in [0.05, 0.75) so that a 0.5 threshold lets some through.
    """
    return detections_from(state, observe_noisy(state, raster, ghost_slots))


def detections_from(state: WorldState, seen: NoisyReading) -> ObjectList:
    """The object sensor's output for an already computed noisy scan (shared with `render_frame`)."""
    ghost_slots = seen.ghosts.score.shape[1]
    N, B = state.num_agents, state.batch_size
    scan = seen.scan
    reported = scan.visible & scan.objects.drawn  # (B, N + G)
    real_score = _real_scores(scan, seen.noise, state.sensor.range)  # (B, N)
    score = torch.cat((real_score, seen.ghosts.score), dim=1)
    ghost_id = torch.full((B, ghost_slots), -1, dtype=torch.long, device=state.device)
    agent_id = torch.cat((torch.arange(N, device=state.device).expand(B, N), ghost_id), dim=1)
    score = torch.where(reported, score, 0.0)
    return _object_list(scan, score, agent_id, reported, state.ego.speed.dtype)
