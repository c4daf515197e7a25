"""Every random draw of the sensors, keyed by (seed, step, stream, slot, field).

`render_frame` and `detect_objects` call the same functions here, so the
raster and the object list of one state share their misses, ghosts and jitter.
Draws are made in float64 (see `sim.sensors.pose`) and depend only on the
episode's seed and step and on the slot, never on the batch around them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sim import rng
from sim.config import RasterConfig
from sim.rng import Stream
from sim.sensors.pose import GEOMETRY_DTYPE
from sim.sensors.scene import EgoObjects
from sim.state import NUM_CLASSES, WorldState

# Velocity noise per metre of position jitter: what differencing two jittered
# positions ~0.7 s apart gives (sqrt(2) / 0.7 ~ 2 per second).
VELOCITY_NOISE_PER_JITTER = 2.0
# Ghosts appear outside the ego's own box (its half-length is ~2.3 m).
GHOST_MIN_RANGE = 3.0
# Ghost boxes: pedestrian- to small-car-sized clutter, m.
GHOST_LENGTH = (0.5, 2.5)
GHOST_WIDTH = (0.5, 1.5)
GHOST_HEIGHT = (0.5, 2.0)
# Std of a ghost's (meaningless) velocity, m/s.
GHOST_SPEED_STD = 1.0
# Spurious single-cell returns (rain, dust) have heights up to a person's.
SALT_HEIGHT_MAX = 2.0
# Salt is drawn in fixed slots, one per this many raster cells (rounded up); this caps
# `SensorSettings.raster_noise` at 1 - (1 - 1 / cells)^slots >= 1 - exp(-1 / SALT_CELLS_PER_SLOT) = 0.0308.
SALT_CELLS_PER_SLOT = 32
# The most raster noise a scenario file may ask for, checked when it is loaded, before the raster is known:
# below the cap above for every raster (the smallest cap, as cells grow, is 1 - exp(-1 / SALT_CELLS_PER_SLOT)).
SCENARIO_RASTER_NOISE_LIMIT = 0.03
if -math.expm1(-1.0 / SALT_CELLS_PER_SLOT) < SCENARIO_RASTER_NOISE_LIMIT:
    raise AssertionError("SCENARIO_RASTER_NOISE_LIMIT must stay below what every raster's salt slots can draw")

# Sub-keys: one per quantity drawn within a stream.
_X, _Y, _VX, _VY, _SCORE, _COUNT, _YAW, _LENGTH, _WIDTH, _HEIGHT, _KIND, _CELL = range(12)


def _uniform(state: WorldState, stream: int, slots: int, field: int) -> Tensor:
    """[B, slots] float64 U[0, 1) keyed by (seed, step, stream, slot, field)."""
    slot = torch.arange(slots, device=state.device).unsqueeze(0)
    key = (state.seed.unsqueeze(1), state.step.unsqueeze(1), stream, slot, field)
    return rng.uniform(*key, dtype=GEOMETRY_DTYPE)


def _normal(state: WorldState, stream: int, slots: int, field: int) -> Tensor:
    """[B, slots] float64 standard normal keyed like `_uniform`."""
    slot = torch.arange(slots, device=state.device).unsqueeze(0)
    key = (state.seed.unsqueeze(1), state.step.unsqueeze(1), stream, slot, field)
    return rng.normal(*key, dtype=GEOMETRY_DTYPE)


def _between(u: Tensor, bounds: tuple[float, float]) -> Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


@dataclass(frozen=True)
class ObjectNoise:
    """Per-agent-slot noise of one frame.

    Attributes:
        jitter: [B, N, 2] float64, position error in the ego frame, m.
        velocity_noise: [B, N, 2] float64, velocity error in the ego frame, m/s.
        missed: [B, N] bool, the sensor drops the object this frame.
        score_draw: [B, N] float64 U[0, 1), spreads detection confidences.
    """

    jitter: Tensor
    velocity_noise: Tensor
    missed: Tensor
    score_draw: Tensor


def draw_object_noise(state: WorldState) -> ObjectNoise:
    N = state.num_agents
    sensor = state.sensor
    jitter_std = sensor.position_jitter.to(GEOMETRY_DTYPE).reshape(-1, 1, 1)

    def pair(stream: int, fx: int, fy: int) -> Tensor:
        return torch.stack((_normal(state, stream, N, fx), _normal(state, stream, N, fy)), dim=-1)

    jitter = pair(Stream.SENSOR_JITTER, _X, _Y) * jitter_std  # (B, N, 2)
    velocity_noise = pair(Stream.SENSOR_JITTER, _VX, _VY) * (jitter_std * VELOCITY_NOISE_PER_JITTER)
    miss_prob = sensor.miss_prob.to(GEOMETRY_DTYPE).unsqueeze(1)
    missed = _uniform(state, Stream.SENSOR_MISS, N, _COUNT) < miss_prob
    score_draw = _uniform(state, Stream.SENSOR_MISS, N, _SCORE)
    return ObjectNoise(jitter=jitter, velocity_noise=velocity_noise, missed=missed, score_draw=score_draw)


def apply_object_noise(objects: EgoObjects, noise: ObjectNoise) -> EgoObjects:
    """Jitter positions and velocities and drop missed objects from the returns.

    A missed object still blocks rays: the sensor failed to return it, the
    object did not vanish.
    """
    return EgoObjects(
        xy=objects.xy + noise.jitter,
        yaw=objects.yaw,
        velocity=objects.velocity + noise.velocity_noise,
        length=objects.length,
        width=objects.width,
        height=objects.height,
        kind=objects.kind,
        present=objects.present,
        drawn=objects.drawn & ~noise.missed,
    )


def ghost_count(state: WorldState, slots: int) -> Tensor:
    """[B] long, Poisson(`ghost_rate`) by inverse CDF from one draw, capped at `slots`."""
    rate = state.sensor.ghost_rate.to(GEOMETRY_DTYPE).clamp_min(1e-12).unsqueeze(1)  # (B, 1)
    k = torch.arange(slots, dtype=GEOMETRY_DTYPE, device=state.device)  # (G,)
    log_pmf = -rate + k * torch.log(rate) - torch.lgamma(k + 1.0)  # (B, G)
    cdf = torch.exp(log_pmf).cumsum(dim=1)  # (B, G): P(count <= k)
    u = _uniform(state, Stream.SENSOR_GHOST, 1, _COUNT)  # (B, 1)
    return (cdf <= u).sum(dim=1)


@dataclass(frozen=True)
class Ghosts:
    """False positives of one frame: boxes in the ego frame and their confidences.

    Attributes:
        objects: EgoObjects with G slots; `present` marks the active ghosts.
        score: [B, G] float64 in [0.05, 0.75), confidence the object sensor reports.
    """

    objects: EgoObjects
    score: Tensor


def draw_ghosts(state: WorldState, slots: int) -> Ghosts:
    """`slots` ghost boxes, the first `ghost_count` active, uniform over the disc in range."""

    def u(field: int) -> Tensor:
        return _uniform(state, Stream.SENSOR_GHOST, slots, field)

    far = state.sensor.range.to(GEOMETRY_DTYPE).clamp_min(GHOST_MIN_RANGE).unsqueeze(1)  # (B, 1)
    # Uniform over the annulus area between GHOST_MIN_RANGE and the range.
    radius = torch.sqrt(GHOST_MIN_RANGE**2 + u(_X) * (far**2 - GHOST_MIN_RANGE**2))  # (B, G)
    bearing = (2.0 * u(_Y) - 1.0) * math.pi
    xy = torch.stack((radius * torch.cos(bearing), radius * torch.sin(bearing)), dim=-1)  # (B, G, 2)
    vx = _normal(state, Stream.SENSOR_GHOST, slots, _VX)
    vy = _normal(state, Stream.SENSOR_GHOST, slots, _VY)
    velocity = torch.stack((vx, vy), dim=-1) * GHOST_SPEED_STD  # (B, G, 2)
    slot = torch.arange(slots, device=state.device).unsqueeze(0)  # (1, G)
    active = slot < ghost_count(state, slots).unsqueeze(1)  # (B, G)
    kind = (u(_KIND) * NUM_CLASSES).long().clamp_max(NUM_CLASSES - 1)
    objects = EgoObjects(
        xy=xy,
        yaw=(2.0 * u(_YAW) - 1.0) * math.pi,
        velocity=velocity,
        length=_between(u(_LENGTH), GHOST_LENGTH),
        width=_between(u(_WIDTH), GHOST_WIDTH),
        height=_between(u(_HEIGHT), GHOST_HEIGHT),
        kind=kind,
        present=active,
        drawn=active,
    )
    return Ghosts(objects=objects, score=_between(u(_SCORE), (0.05, 0.75)))


@dataclass(frozen=True)
class Salt:
    """Spurious single-cell returns.

    Attributes:
        cell: [B, S] long, flat raster cell index (row * W + column).
        lit: [B, S] bool, the slot fires this frame.
        height: [B, S] float64, m.
    """

    cell: Tensor
    lit: Tensor
    height: Tensor


def salt_slots(raster: RasterConfig) -> int:
    return -(-raster.size * raster.size // SALT_CELLS_PER_SLOT)


def max_raster_noise(raster: RasterConfig) -> float:
    """Largest `raster_noise` that `salt_slots` fixed slots can realise."""
    cells = raster.size * raster.size
    return 1.0 - (1.0 - 1.0 / cells) ** salt_slots(raster)


def draw_salt(state: WorldState, raster: RasterConfig) -> Salt:
    """S slots, each firing with probability q at a uniform cell.

    q = cells * (1 - (1 - p)^(1/S)) makes P(a given cell is hit by some slot)
    = 1 - (1 - q / cells)^S exactly p = `raster_noise`.
    """
    p = state.sensor.raster_noise.to(GEOMETRY_DTYPE)
    limit = max_raster_noise(raster)
    if bool((p > limit).any()):
        raise ValueError(
            f"SensorSettings.raster_noise: expected values <= {limit:.4f} for a "
            f"{raster.size}x{raster.size} raster, got max {float(p.max()):.4g}"
        )
    S, cells = salt_slots(raster), raster.size * raster.size
    q = (cells * -torch.expm1(torch.log1p(-p) / S)).unsqueeze(1)  # (B, 1)
    lit = _uniform(state, Stream.SENSOR_RASTER, S, _COUNT) < q
    cell = (_uniform(state, Stream.SENSOR_RASTER, S, _CELL) * cells).long().clamp_max(cells - 1)
    height = _uniform(state, Stream.SENSOR_RASTER, S, _HEIGHT) * SALT_HEIGHT_MAX
    return Salt(cell=cell, lit=lit, height=height)
