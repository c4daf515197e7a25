"""Decode once, at the edge: raw `DenseOutput` maps -> distributions in the ego frame.

`dense_candidates` turns every one of the G x G cells into a candidate object
(probabilities, metres, SPD covariances); the renderer and the losses read
those. `decode` keeps the top-N cells by existence as `Detections` slots; the
probabilities travel with them and nothing is thresholded.

Cell m = i G + j (row-major) is grid row i (ahead to behind), column j (left
to right), as in the rasters.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from core.contracts import TensorContract, check_simplex, check_spd, spec
from perception.heads import DenseOutput
from perception.types import Detections, check_positive
from sim.config import RasterConfig
from sim.sensors.raster import cell_to_ego
from sim.state import NUM_CLASSES

# Covariance floors keep every matrix SPD whatever the head says: (0.05 m)^2
# is about the ground-truth centre's own precision at 0.5 m cells; (0.05 m/s)^2
# likewise for velocity.
POSITION_STD_FLOOR = 0.05
VELOCITY_STD_FLOOR = 0.05
# Bounds on the raw log stds and log sizes so exp() never overflows or
# collapses; they are far outside anything a real object needs.
LOG_STD_RANGE = (math.log(1e-3), math.log(1e3))
LOG_SIZE_RANGE = (math.log(1e-2), math.log(1e2))
LOG_CONCENTRATION_RANGE = (-10.0, math.log(1e4))
# |correlation| < 1 so the Cholesky factor's second diagonal entry stays positive.
MAX_CORRELATION = 0.999


@dataclass(frozen=True)
class Candidates(TensorContract):
    """Every grid cell as a candidate object, ego frame, SI units (M = G * G).

    Attributes:
        existence: [B, M] float in [0, 1], probability that an object's centre is in the cell.
        class_probs: [B, M, 3] float, (vehicle, pedestrian, cyclist), rows sum to 1.
        position: [B, M, 2] float, mean box centre, m.
        position_cov: [B, M, 2, 2] float, SPD covariance of `position`, m^2.
        velocity: [B, M, 2] float, mean absolute velocity, m/s, ego axes.
        velocity_cov: [B, M, 2, 2] float, SPD covariance of `velocity`, (m/s)^2.
        heading: [B, M] float, von Mises location, rad, in (-pi, pi].
        concentration: [B, M] float > 0, von Mises concentration.
        size: [B, M, 2] float > 0, (length, width), m.
    """

    existence: Tensor = spec(("B", "M"), prob=True)
    class_probs: Tensor = spec(("B", "M", NUM_CLASSES), prob=True)
    position: Tensor = spec(("B", "M", 2))
    position_cov: Tensor = spec(("B", "M", 2, 2))
    velocity: Tensor = spec(("B", "M", 2))
    velocity_cov: Tensor = spec(("B", "M", 2, 2))
    heading: Tensor = spec(("B", "M"))
    concentration: Tensor = spec(("B", "M"), low=0.0)
    size: Tensor = spec(("B", "M", 2), low=0.0)

    def _check(self, sizes: dict[str, int]) -> None:
        every = torch.ones_like(self.existence, dtype=torch.bool)
        check_simplex("Candidates.class_probs", self.class_probs)
        check_spd("Candidates.position_cov", self.position_cov)
        check_spd("Candidates.velocity_cov", self.velocity_cov)
        check_positive("Candidates.size", self.size, every)

    def at(self, index: Tensor) -> Candidates:
        """The candidates of cells `index [B, N]` (long): every field's M axis becomes N."""
        return dataclasses.replace(
            self, **{name: take_cells(getattr(self, name), index) for name in self.field_names()}
        )


def cell_centres(grid: int, raster: RasterConfig, stride: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[G * G, 2] ego-frame (x, y) of each grid cell's centre, m, row-major."""
    if grid * stride != raster.size:
        raise ValueError(f"grid of {grid} cells x stride {stride}: expected {raster.size} raster cells")
    centre = (torch.arange(grid, dtype=dtype, device=device) + 0.5) * stride  # (G,) raster cells
    x, y = cell_to_ego(centre, centre, raster)  # (G,) per grid row, (G,) per grid column
    return torch.stack((x.unsqueeze(1).expand(grid, grid), y.unsqueeze(0).expand(grid, grid)), dim=-1).reshape(-1, 2)


def _cells(map_: Tensor) -> Tensor:
    """[B, C, G, G] -> [B, G G, C]; [B, G, G] -> [B, G G]."""
    if map_.dim() == 3:
        return map_.flatten(1)
    return map_.flatten(2).transpose(1, 2)


def gaussian_cov(log_std: Tensor, corr_raw: Tensor, floor: float) -> Tensor:
    """[..., 2, 2] SPD covariance L L^T + floor^2 I from log stds [..., 2] and a pre-tanh correlation [...].

    L = [[sx, 0], [rho sy, sqrt(1 - rho^2) sy]] is a Cholesky factor with a positive diagonal.
    """
    std = log_std.clamp(*LOG_STD_RANGE).exp()  # (..., 2)
    rho = MAX_CORRELATION * torch.tanh(corr_raw)  # (...)
    sx, sy = std[..., 0], std[..., 1]
    off = rho * sx * sy
    row0 = torch.stack((sx * sx + floor**2, off), dim=-1)
    row1 = torch.stack((off, sy * sy + floor**2), dim=-1)
    return torch.stack((row0, row1), dim=-2)


def _check_temperature(temperature: float | Tensor) -> None:
    # A tensor temperature is a graph input (checked by whoever fits it); a number is checked here.
    if not isinstance(temperature, Tensor) and not temperature > 0:
        raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")


def dense_candidates(
    out: DenseOutput, raster: RasterConfig, stride: int, temperature: float | Tensor = 1.0
) -> Candidates:
    """All G x G cells as candidate objects in the ego frame; existence = sigmoid(logit / temperature)."""
    _check_temperature(temperature)
    G = out.grid_size
    logit = _cells(out.existence_logit)  # (B, M)
    centres = cell_centres(G, raster, stride, logit.dtype, logit.device)  # (M, 2)
    cell_m = stride * raster.resolution
    heading = _cells(out.heading)  # (B, M, 2) unnormalised (cos, sin)
    return Candidates(
        existence=torch.sigmoid(logit / temperature),
        class_probs=torch.softmax(_cells(out.class_logits), dim=-1),
        position=centres + _cells(out.offset) * cell_m,
        position_cov=gaussian_cov(_cells(out.position_log_std), _cells(out.position_corr), POSITION_STD_FLOOR),
        velocity=_cells(out.velocity),
        velocity_cov=gaussian_cov(_cells(out.velocity_log_std), _cells(out.velocity_corr), VELOCITY_STD_FLOOR),
        heading=torch.atan2(heading[..., 1], heading[..., 0]),
        concentration=_cells(out.heading_log_concentration).clamp(*LOG_CONCENTRATION_RANGE).exp(),
        size=_cells(out.log_size).clamp(*LOG_SIZE_RANGE).exp(),
    )


def take_cells(values: Tensor, index: Tensor) -> Tensor:
    """Gather cells `index [B, N]` from `values [B, M, ...]` -> `[B, N, ...]`."""
    tail = values.shape[2:]
    expanded = index.reshape(*index.shape, *([1] * len(tail))).expand(*index.shape, *tail)
    return torch.gather(values, 1, expanded)


def select(candidates: Candidates, index: Tensor) -> Detections:
    """`Detections` from the candidate cells `index [B, N]`, every slot valid."""
    c = candidates.at(index)
    return Detections(
        existence=c.existence,
        class_probs=c.class_probs,
        position=c.position,
        position_cov=c.position_cov,
        velocity=c.velocity,
        velocity_cov=c.velocity_cov,
        heading=c.heading,
        heading_concentration=c.concentration,
        size=c.size,
        valid=torch.ones_like(index, dtype=torch.bool),
    )


def decode(
    out: DenseOutput, raster: RasterConfig, stride: int, slots: int, temperature: float | Tensor = 1.0
) -> Detections:
    """The `slots` (N) cells of highest existence as `Detections`, best first.

    Every slot is valid: an unlikely object is expressed by its existence
    probability, never dropped. `temperature` (> 0) divides the existence logit
    and is fitted afterwards for calibration; it does not change the ranking.
    """
    cells = out.grid_size**2
    if not 1 <= slots <= cells:
        raise ValueError(f"decode.slots: expected an int in [1, {cells}] (the grid's cell count), got {slots!r}")
    candidates = dense_candidates(out, raster, stride, temperature)
    index = torch.topk(_cells(out.existence_logit), slots, dim=1).indices  # (B, N) by logit: same order
    return select(candidates, index)


def scale_position_covariance(detections: Detections, scale: float) -> Detections:
    """The detections with every position covariance multiplied by `scale` (> 0), the calibration
    `perception.calibration.fit_covariance_scale` fits; 1 returns them unchanged."""
    if scale == 1.0:
        return detections
    return dataclasses.replace(detections, position_cov=detections.position_cov * scale)


def harden(detections: Detections) -> Detections:
    """The argmax ablation (DESIGN.md): what a pipeline that passes decisions, not
    distributions, would hand downstream. Existence is thresholded at 0.5, the
    class becomes one-hot, and position and velocity collapse to points (the
    covariance floors). It exists to measure in closed loop what the
    distributions buy; it is never the default.
    """
    d = detections
    existence = (d.existence >= 0.5).to(d.existence.dtype)
    one_hot = torch.nn.functional.one_hot(d.class_probs.argmax(-1), d.class_probs.shape[-1])
    eye = torch.eye(2, dtype=d.position_cov.dtype, device=d.position_cov.device)
    return dataclasses.replace(
        d,
        existence=existence,
        class_probs=one_hot.to(d.class_probs.dtype),
        position_cov=(POSITION_STD_FLOOR**2 * eye).expand_as(d.position_cov),
        velocity_cov=(VELOCITY_STD_FLOOR**2 * eye).expand_as(d.velocity_cov),
    )
