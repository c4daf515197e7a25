"""`StackConfig`: the configs of the four modules composed, plus the stack's own switches."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from core.config import ConfigError, config_from_dict
from perception.model import PerceptionConfig
from planning.config import PlannerConfig
from prediction.config import PredictorConfig
from sim.proposals import ProposalConfig

OWNER = "StackConfig"


@dataclass(frozen=True)
class StackConfig:
    """Everything that builds a `Stack`.

    Attributes:
        perception: detector and tracker (existence temperature and covariance scale included).
        predictor: the forecast model.
        planner: candidates, risk and costs.
        sigma: the default risk sensitivity for callers that pass none (the simulator policy).
        follow_route: forecasts of agents driving along the ego's route bend with it (`prediction.road`);
            the predictor reads no lane geometry and would forecast a car on a bend leaving its lane.
        argmax: the ablation switch (DESIGN.md): detections thresholded at 0.5 and hardened,
            forecasts reduced to their most likely mode as a point, existence thresholded.
            The same weights; never the default.
    """

    perception: PerceptionConfig = field(default_factory=PerceptionConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    sigma: float = 1.0
    follow_route: bool = False
    argmax: bool = False

    def __post_init__(self) -> None:
        for name, kind in (
            ("perception", PerceptionConfig),
            ("predictor", PredictorConfig),
            ("planner", PlannerConfig),
        ):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"{OWNER}.{name}: expected a {kind.__name__}, got {getattr(self, name)!r}")
        if not (isinstance(self.sigma, int | float) and math.isfinite(self.sigma)):
            raise ConfigError(f"{OWNER}.sigma: expected a finite number, got {self.sigma!r}")
        if not isinstance(self.follow_route, bool):
            raise ConfigError(f"{OWNER}.follow_route: expected a bool, got {self.follow_route!r}")
        if not isinstance(self.argmax, bool):
            raise ConfigError(f"{OWNER}.argmax: expected a bool, got {self.argmax!r}")
        tracker_steps = self.perception.tracker.history_steps
        if tracker_steps != self.predictor.history:
            raise ConfigError(
                f"{OWNER}.predictor.history: expected the tracker's history_steps ({tracker_steps}), "
                f"got {self.predictor.history}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackConfig:
        return config_from_dict(cls, data, OWNER)

    @classmethod
    def tiny(cls, **changes: Any) -> StackConfig:
        """Small modules for tests and smoke runs."""
        base: dict[str, Any] = {
            "perception": PerceptionConfig.tiny(),
            "predictor": PredictorConfig.tiny(),
            "planner": PlannerConfig(
                proposals=ProposalConfig(speed_fractions=(0.5, 1.0), lateral_offsets=(0.0, 1.0), lane_width=0.0),
                max_agents=4,
            ),
        }
        base.update(changes)
        return cls(**base)
