"""Configuration of the detector: its input stack, grid, slots and network widths."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import require
from sim.config import RasterConfig
from sim.types import BEV_CHANNELS, MAP_CHANNELS

WARP_MODES = ("bilinear", "nearest")


def _require(cond: bool, name: str, expected: str, value: object) -> None:
    require(cond, "DetectorConfig", name, expected, value)


@dataclass(frozen=True)
class DetectorConfig:
    """The detector's input, output grid and network sizes.

    Attributes:
        frames: K, BEV frames stacked (the current one and K - 1 past sim steps),
            each warped into the current ego frame.
        raster: the sensor and map rasters the detector reads (ego frame).
        stride: raster cells per output grid cell; the output grid is
            `raster.size / stride` cells a side (128 / 4 = 32 cells of 2 m).
        slots: N, top-existence cells decoded into `Detections` slots.
        widths: output channels of the backbone's stages; stage s has stride
            2^(s+1) (stride 2, 4, 8, 16 for four stages).
        neck_width: channels of the upsampling path and of the stride-`stride`
            feature map (`Detector.feature_channels`).
        head_width: channels of the shared 3x3 conv in front of the 1x1 output conv.
        embed_dim: D, size of the pooled embedding (`Detector.embed`).
        group_size: channels per GroupNorm group. Group (not batch) normalisation
            keeps every episode's output independent of what else is in the batch,
            as the simulator is.
        warp_mode: `grid_sample` mode used to warp past frames into the current
            ego frame: "bilinear" keeps sub-cell ego motion as fractional
            occupancy, "nearest" keeps values binary.
        prior_existence: existence probability the untrained head starts at
            (the focal-loss bias initialisation; most cells are empty).
    """

    frames: int = 3
    raster: RasterConfig = RasterConfig()
    stride: int = 4
    slots: int = 32
    widths: tuple[int, ...] = (24, 48, 96, 128)
    neck_width: int = 64
    head_width: int = 64
    embed_dim: int = 128
    group_size: int = 8
    warp_mode: str = "bilinear"
    prior_existence: float = 0.01

    def __post_init__(self) -> None:
        _require(isinstance(self.frames, int) and self.frames >= 1, "frames", "an int >= 1", self.frames)
        _require(isinstance(self.raster, RasterConfig), "raster", "a sim.config.RasterConfig", self.raster)
        _require(isinstance(self.stride, int) and self.stride >= 1, "stride", "an int >= 1", self.stride)
        self._check_stride()
        _require(
            isinstance(self.slots, int) and 1 <= self.slots <= self.grid_size**2,
            "slots",
            f"an int in [1, {self.grid_size**2}] (the grid's cell count)",
            self.slots,
        )
        _require(
            len(self.widths) >= 2 and all(isinstance(w, int) and w >= 1 for w in self.widths),
            "widths",
            "at least two positive ints",
            self.widths,
        )
        for name in ("neck_width", "head_width", "embed_dim", "group_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, name, "an int >= 1", value)
        for name in ("widths", "neck_width", "head_width"):
            values = getattr(self, name)
            values = values if isinstance(values, tuple) else (values,)
            _require(
                all(v % self.group_size == 0 for v in values),
                name,
                f"multiples of group_size={self.group_size}",
                getattr(self, name),
            )
        _require(self.warp_mode in WARP_MODES, "warp_mode", f"one of {WARP_MODES}", self.warp_mode)
        _require(0 < self.prior_existence < 1, "prior_existence", "in (0, 1)", self.prior_existence)

    def _check_stride(self) -> None:
        stride_exponent = self.stride.bit_length() - 1
        _require(
            self.stride >= 2 and self.stride == 2**stride_exponent,
            "stride",
            "a power of two >= 2 (the backbone halves the resolution per stage)",
            self.stride,
        )
        _require(
            stride_exponent <= len(self.widths),
            "stride",
            f"at most 2^{len(self.widths)} for {len(self.widths)} backbone stages",
            self.stride,
        )
        deepest = 2 ** len(self.widths)
        _require(
            self.raster.size % deepest == 0,
            "raster",
            f"a raster size divisible by {deepest} (the deepest stage's stride)",
            self.raster.size,
        )

    @property
    def grid_size(self) -> int:
        """G, output grid cells per side."""
        return self.raster.size // self.stride

    @property
    def cell_m(self) -> float:
        """Side of one output grid cell, m."""
        return self.stride * self.raster.resolution

    @property
    def in_channels(self) -> int:
        """2K + 3: K warped BEV frames of 2 channels, then the current map raster."""
        return len(BEV_CHANNELS) * self.frames + len(MAP_CHANNELS)

    @classmethod
    def tiny(cls, raster: RasterConfig | None = None, **changes: object) -> DetectorConfig:
        """A small network on a small raster, for tests (32 x 32 cells, 8 x 8 grid)."""
        base = dict(
            raster=raster or RasterConfig(size=32, resolution=1.0),
            slots=8,
            widths=(8, 16, 16),
            neck_width=16,
            head_width=16,
            embed_dim=16,
        )
        base.update(changes)
        return cls(**base)  # type: ignore[arg-type]
