"""Object-level outputs: exact labels (`ground_truth`) and a noisy object sensor.

`detect_objects` reports what `render_frame` of the same state draws: the same
jittered boxes, the same misses and the same ghosts.
"""

from __future__ import annotations

from dataclasses import replace

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


def pad_objects(labels: ObjectList, slots: int) -> tuple[ObjectList, Tensor]:
    """Labels in exactly `slots` slots, and [B] how many visible objects did not fit.

    Kept first: valid and visible objects, then valid ones, nearest the ego first.
    """
    B, M = labels.valid.shape
    if slots > M:
        labels = _append_empty(labels, slots - M)
    seen = labels.valid & labels.visible
    priority = seen.double() * 2e6 + labels.valid.double() * 1e6 - labels.xy.double().norm(dim=-1).clamp_max(1e5)
    keep = torch.topk(priority, slots, dim=1).indices.sort(dim=1).values  # (B, slots), slot order kept
    dropped = seen.sum(1) - torch.gather(seen, 1, keep).sum(1)
    return _gather_objects(labels, keep), dropped


def pad_ghosts(sensed: ObjectList, slots: int = DEFAULT_GHOST_SLOTS) -> ObjectList:
    """The sensor's ghosts (`agent_id == -1`) of `sensed` in exactly `slots` slots, nearest the ego first
    when there are more; every other slot is marked invalid."""
    is_ghost = sensed.valid & (sensed.agent_id == -1)  # (B, M)
    only_ghosts = replace(sensed, valid=is_ghost, visible=sensed.visible & is_ghost)
    return pad_objects(only_ghosts, slots)[0]


def _append_empty(labels: ObjectList, extra: int) -> ObjectList:
    B = labels.valid.shape[0]
    fill = {"length": 1.0, "width": 1.0, "agent_id": -1}
    fields = {}
    for name in ObjectList.field_names():
        value = getattr(labels, name)
        pad = torch.full((B, extra, *value.shape[2:]), fill.get(name, 0), dtype=value.dtype, device=value.device)
        fields[name] = torch.cat((value, pad), dim=1)
    return ObjectList(**fields)


def _gather_objects(labels: ObjectList, index: Tensor) -> ObjectList:
    fields = {}
    for name in ObjectList.field_names():
        value = getattr(labels, name)
        expanded = index.reshape(*index.shape, *([1] * (value.dim() - 2))).expand(*index.shape, *value.shape[2:])
        fields[name] = torch.gather(value, 1, expanded)
    return ObjectList(**fields)


def valid_slots(objects: ObjectList) -> ObjectList:
    """The valid slots of a batch-of-one `objects`, in slot order (a log stores a frame's ghosts so: most
    frames have none, and `pad_ghosts` restores the G slots)."""
    if objects.valid.shape[0] != 1:
        raise ValueError(f"valid_slots: expected a batch of one, got {objects.valid.shape[0]}")
    keep = torch.nonzero(objects.valid[0]).flatten()
    return ObjectList(**{name: getattr(objects, name)[:, keep] for name in ObjectList.field_names()})
