"""`PredictorConfig`: the sizes and physical scales of the Trajectron-style predictor."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.config import ConfigError, config_from_dict, require
from sim.state import NUM_CLASSES

OWNER = "PredictorConfig"


@dataclass(frozen=True)
class PredictorConfig:
    """The predictor network and the physics it integrates through.

    Attributes:
        history: observed steps H (the current step is H - 1).
        horizon: predicted steps T.
        dt: s per step.
        latent: K, values of the discrete latent z (= modes of the forecast).
        hidden: width of the agent encoding and of the history GRU.
        edge_hidden: width of the neighbour (edge) encoding.
        decoder_hidden: width of the decoder MLP.
        interaction_radius: m, neighbours farther than this at the current step are
            not attended to (Trajectron++ uses 3 m for pedestrians).
        map_channels: channels of the map raster read around each agent; 0 = no map encoder.
        map_patch: cells per side of the map patch around each agent.
        map_patch_m: side of that patch, m.
        lanes: read the lane centrelines near the ego (`SensorFrame.lanes`, windows' `lanes`): each
            agent attends over those within `lane_radius` (`prediction.encoders.LaneEncoder`).
        lane_radius: m, lanes with no point this close to an agent are not attended to by it; also
            the scale of the lane points' positions relative to the agent in the lane features.
        position_scale: m, divides relative positions in the input features.
        velocity_scale: m/s, divides velocities in the input features.
        min_control_std: floor of every control standard deviation (m/s for pedestrians'
            velocities; rad/s and m/s^2 for vehicles' yaw rate and acceleration).
        max_control_std: ceiling of every control standard deviation.
        vehicle_dynamics: integrate vehicles and cyclists as unicycles and blend by class
            probability; False = a pedestrian-only model (e.g. ETH/UCY) that moves every
            agent as a single integrator and skips the unicycle branch's cost.
    """

    history: int = 8
    horizon: int = 12
    dt: float = 0.4
    latent: int = 25
    hidden: int = 64
    edge_hidden: int = 32
    decoder_hidden: int = 128
    interaction_radius: float = 3.0
    map_channels: int = 0
    map_patch: int = 16
    map_patch_m: float = 16.0
    lanes: bool = False
    lane_radius: float = 30.0
    position_scale: float = 2.0
    velocity_scale: float = 1.5
    min_control_std: float = 0.01
    max_control_std: float = 5.0
    vehicle_dynamics: bool = True

    def __post_init__(self) -> None:
        for name in ("history", "horizon", "latent", "hidden", "edge_hidden", "decoder_hidden", "map_patch"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, OWNER, name, "an int >= 1", value)
        require(self.history >= 2, OWNER, "history", ">= 2 steps (velocity needs two)", self.history)
        require(isinstance(self.map_channels, int) and self.map_channels >= 0, OWNER, "map_channels", "an int >= 0",
                self.map_channels)  # fmt: skip
        require(isinstance(self.lanes, bool), OWNER, "lanes", "a bool", self.lanes)
        for name in ("dt", "interaction_radius", "map_patch_m", "lane_radius", "position_scale", "velocity_scale"):
            value = getattr(self, name)
            require(isinstance(value, int | float) and value > 0, OWNER, name, "a number > 0", value)
        require(0 < self.min_control_std < self.max_control_std, OWNER, "min_control_std",
                f"in (0, max_control_std={self.max_control_std})", self.min_control_std)  # fmt: skip

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictorConfig:
        """Inverse of `to_dict`; unknown or bad fields raise `ConfigError` naming them."""
        try:
            return config_from_dict(cls, data, OWNER)
        except TypeError as exc:  # a field of the wrong JSON type
            raise ConfigError(f"{OWNER}: {exc}") from exc

    @classmethod
    def tiny(cls, **changes: Any) -> PredictorConfig:
        """A small network for tests and smoke runs."""
        base = {"latent": 5, "hidden": 16, "edge_hidden": 8, "decoder_hidden": 16}
        base.update(changes)
        return cls(**base)
