"""The simulator's sizes: the sensor raster and the fixed capacities that keep tensors' shapes static."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.config import require


@dataclass(frozen=True)
class RasterConfig:
    """Bird's-eye rasters in the ego frame: `size` x `size` cells of `resolution` m.

    The ego sits at `ego_row_fraction` of the height from the top, facing up, so
    more of the raster looks ahead than behind.
    """

    size: int = 128
    resolution: float = 0.5
    ego_row_fraction: float = 0.7
    angular_bins: int = 720

    def __post_init__(self) -> None:
        o = "RasterConfig"
        require(self.size >= 8, o, "size", ">= 8 cells", self.size)
        require(self.resolution > 0, o, "resolution", "> 0 m", self.resolution)
        require(0 < self.ego_row_fraction < 1, o, "ego_row_fraction", "in (0, 1)", self.ego_row_fraction)
        require(self.angular_bins >= 16, o, "angular_bins", ">= 16", self.angular_bins)

    @property
    def extent_m(self) -> float:
        return self.size * self.resolution


@dataclass(frozen=True)
class Capacity:
    """Fixed maxima so tensors keep static shapes; slots beyond use are masked.

    Attributes:
        agents: N, agent slots per episode (not counting the ego).
        paths: L, lane/route polylines per map.
        path_points: P, points per polyline (resampled at equal arc length).
        crosswalks: C, crosswalk polygons per map.
        log_steps: TL, replay-log length in sim steps (1 when nothing replays).
        ghosts: G, false-positive slots per sensor frame.
    """

    agents: int = 32
    paths: int = 16
    path_points: int = 96
    crosswalks: int = 4
    log_steps: int = 1
    ghosts: int = 8

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            require(isinstance(value, int) and value >= 1, "Capacity", f.name, "an int >= 1", value)
