"""Prediction training windows from sampled episodes: what a drive's true tracks give the predictor.

    samples = drive_samples(...)          # `prediction.logwindows`: a drive log sampled every 4 steps
    windows = cut_windows(samples)        # every window of every episode

Every `sample_dt` (every 4 sim steps, from step 0; the final state's sample
included when it falls on one) the box centre of every agent, whether it is
present, its class and size, and the ego's pose are sampled (`EpisodeSamples`,
world frame; `sample_row`). `cut_windows` then cuts windows of
`HISTORY + HORIZON` samples around every current sample k that has
`HISTORY - 1` samples before it and `HORIZON` after it inside the episode.
The samples come from drive logs (`prediction.logwindows`), the one recorded
format every training job reads.

Frame: positions are in the ego frame at the window's current step, exactly
the frame of `Tracks` and `Forecast` (`sim.sensors.pose.SensorPose`: origin at
the ego box centre `sim.geometry.ego_center`, x forward along the ego heading,
y left), so windows line up with what the tracker hands the predictor.

Causality: a window holds positions and presence, and the lanes near the ego
at the current step (map knowledge, `sim.sensors.lanes`); everything that
decides its slots (which agents, in which order, their class and size) and the
lanes are read at the current step, never later. Steps after the current one are labels
(`TrajectoryWindows.future`); a model reads `TrajectoryWindows.observed` only.

Window order is deterministic: episode, then current step; every episode of
the same length gives the same number of windows (windows with no agent in
range are kept, every slot invalid).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from core.config import Timing
from core.contracts import TensorContract, spec
from prediction.windows import HISTORY, HORIZON, SAMPLE_DT, TrajectoryWindows
from sim.sensors.pose import GEOMETRY_DTYPE, SensorPose
from sim.state import NUM_CLASSES, AgentState, EgoState

log = logging.getLogger(__name__)

TIMING = Timing(sample_dt=SAMPLE_DT, history_steps=HISTORY, horizon_steps=HORIZON)
# Shortest episode that holds one window: samples 0 .. HISTORY + HORIZON - 1.
MIN_DURATION = (HISTORY + HORIZON - 1) * SAMPLE_DT


def _is_int(value: object, low: int) -> bool:
    # bool is an int subclass; True as a seed or a stride is a mistake.
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- sampling episodes -------------------------------------------------------


@dataclass(frozen=True)
class EpisodeSamples(TensorContract):
    """B episodes sampled every `sample_dt`: T samples of N agent slots, world frame.

    Sample t is sim step `t * sim_steps_per_sample`. Slot n is one agent for the
    whole episode (slots are never reused); it may enter or leave the scene.

    Attributes:
        xy: [B, T, N, 2] float, agent box centre, m, world frame.
        present: [B, T, N] bool, the agent is in the scene (`AgentState.valid`).
        kind: [B, T, N] long, `sim.state.AgentKind` (vehicle, pedestrian, cyclist).
        size: [B, T, N, 2] float > 0, box (length, width), m.
        ego_center: [B, T, 2] float, ego box centre (`sim.geometry.ego_center`), m, world frame.
        ego_yaw: [B, T] float, ego heading, rad.
        lanes: [B, T, N, P, 2] float, the lane centrelines near the ego (`sim.sensors.lanes`), m, in the
            frame of `ego_center` and `ego_yaw` at that sample (a window's frame); 0 where not valid.
        lanes_valid: [B, T, N, P] bool.
    """

    xy: Tensor = spec(("B", "T", "N", 2))
    present: Tensor = spec(("B", "T", "N"), "bool")
    kind: Tensor = spec(("B", "T", "N"), "long", low=0, high=NUM_CLASSES - 1)
    size: Tensor = spec(("B", "T", "N", 2), low=0.0)
    ego_center: Tensor = spec(("B", "T", 2))
    ego_yaw: Tensor = spec(("B", "T"))
    lanes: Tensor = spec(("B", "T", "L", "P", 2))
    lanes_valid: Tensor = spec(("B", "T", "L", "P"), "bool")

    MASK_FIELD = "present"

    @property
    def num_samples(self) -> int:
        return int(self.present.shape[1])


def sample_row(ego: EgoState, agents: AgentState, lanes: Tensor, lanes_valid: Tensor) -> dict[str, Tensor]:
    """The tensors of `EpisodeSamples` without the T axis, for the ego and agents of one time and the lanes
    `[B, N, P, 2]` near the ego then, in its frame (`SensorPose.of(ego)`)."""
    pose = SensorPose.of(ego)  # the sensor's own float64 pose: windows use the tracker's frame
    return {
        "xy": agents.xy.to(GEOMETRY_DTYPE),
        "present": agents.valid,
        "kind": agents.kind,
        "size": torch.stack((agents.length, agents.width), dim=-1),
        "ego_center": pose.center,
        "ego_yaw": pose.yaw,
        "lanes": lanes.to(GEOMETRY_DTYPE),
        "lanes_valid": lanes_valid,
    }


# -- cutting windows ---------------------------------------------------------


def window_currents(num_samples: int, stride: int) -> range:
    """Current sample indices of an episode of `num_samples` samples: HISTORY - 1 before, HORIZON after."""
    return range(HISTORY - 1, num_samples - HORIZON, stride)


def _select_slots(now_xy: Tensor, now_present: Tensor, max_agents: int, radius: float) -> tuple[Tensor, Tensor]:
    """The slots of one current step: agents present within `radius`, nearest first.

    Args:
        now_xy: [B, N, 2] ego-frame positions at the current step, m.
        now_present: [B, N] bool, present at the current step.
    Returns:
        index [B, A] long into N and valid [B, A] bool, A = min(max_agents, N); the
        valid slots come first, ordered by distance to the ego.
    """
    distance = now_xy.norm(dim=-1)  # (B, N)
    candidate = now_present & (distance <= radius)
    key = torch.where(candidate, distance, torch.full_like(distance, math.inf))
    slots = min(max_agents, int(key.shape[1]))
    index = torch.argsort(key, dim=1, stable=True)[:, :slots]  # (B, A)
    return index, torch.gather(candidate, 1, index)


def _gather_agents(values: Tensor, index: Tensor) -> Tensor:
    """values [B, N, ...] -> [B, A, ...] at agent `index [B, A]`."""
    shape = (*index.shape, *values.shape[2:])
    return torch.gather(values, 1, index.reshape(*index.shape, *[1] * (values.dim() - 2)).expand(shape))


def _window_at(samples: EpisodeSamples, k: int, max_agents: int, radius: float) -> TrajectoryWindows:
    """The B windows (one per episode) whose current step is sample `k`."""
    span = slice(k - HISTORY + 1, k + HORIZON + 1)
    c, s = torch.cos(samples.ego_yaw[:, k]), torch.sin(samples.ego_yaw[:, k])
    pose = SensorPose(center=samples.ego_center[:, k], yaw=samples.ego_yaw[:, k], cos=c, sin=s)
    xy = pose.to_ego(samples.xy[:, span].transpose(1, 2))  # (B, N, L, 2), ego frame at step k
    present = samples.present[:, span].transpose(1, 2)  # (B, N, L)
    now = HISTORY - 1
    index, valid = _select_slots(xy[:, :, now], present[:, :, now], max_agents, radius)
    present = _gather_agents(present, index) & valid[..., None]
    xy = torch.where(present[..., None], _gather_agents(xy, index), 0.0)
    # Class and size at the current step: nothing about a slot comes from its future.
    kind = _gather_agents(samples.kind[:, k], index)
    class_probs = torch.nn.functional.one_hot(kind, NUM_CLASSES).float()
    class_probs = torch.where(valid[..., None], class_probs, 1.0 / NUM_CLASSES)  # the filler of `pad_agents`
    size = torch.where(valid[..., None], _gather_agents(samples.size[:, k], index), 1.0)
    return TrajectoryWindows(xy=xy.float(), present=present, class_probs=class_probs, size=size.float(), valid=valid,
                             lanes=samples.lanes[:, k].float(), lanes_valid=samples.lanes_valid[:, k],
                             history=HISTORY)  # fmt: skip


def cut_windows(
    samples: EpisodeSamples, stride: int = 1, max_agents: int = 64, radius: float = 60.0
) -> TrajectoryWindows:
    """Every window of every episode of `samples`, episode-major then by current step.

    Returns S = B * len(window_currents(T, stride)) windows of A = min(max_agents, N) slots: the agents
    present within `radius` m of the ego box centre at the current step, nearest first (`max_agents` of
    them where more are in range); positions in the ego frame of each window's current step, float32.
    """
    for name, value in (("stride", stride), ("max_agents", max_agents)):
        if not _is_int(value, 1):
            raise ValueError(f"cut_windows.{name}: expected an int >= 1, got {value!r}")
    if not (_is_real(radius) and radius > 0):
        raise ValueError(f"cut_windows.radius: expected a finite distance > 0 m, got {radius!r}")
    currents = window_currents(samples.num_samples, stride)
    if len(currents) == 0:
        raise ValueError(
            f"cut_windows: {samples.num_samples} samples hold no window of {HISTORY + HORIZON} samples "
            f"(an episode of at least {MIN_DURATION:g} s)"
        )
    per_step = [_window_at(samples, k, max_agents, radius) for k in currents]

    def stack(name: str) -> Tensor:
        return torch.stack([getattr(w, name) for w in per_step], dim=1).flatten(0, 1)  # (B K, ...)

    return TrajectoryWindows(**{name: stack(name) for name in TrajectoryWindows.field_names()}, history=HISTORY)
