"""Thresholds of the closed-loop metrics, with nuPlan's values as defaults.

nuPlan's numbers come from its closed-loop challenge configuration
(nuplan-devkit, `nuplan/planning/metrics/evaluation_metrics/common/` and the
metric description page); `docs/metrics.md` explains each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import ConfigError


def _positive(owner: str, obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ConfigError(f"{owner}.{name}: expected > 0, got {value!r}")


@dataclass(frozen=True)
class CollisionConfig:
    """At-fault rules. `stopped_speed`: below it (m/s) the ego is stopped and never at fault."""

    stopped_speed: float = 0.05

    def __post_init__(self) -> None:
        _positive("CollisionConfig", self, "stopped_speed")


@dataclass(frozen=True)
class TTCConfig:
    """Time to collision by constant-velocity projection (nuPlan's settings).

    Attributes:
        step: projection step, s.
        horizon: projection horizon, s (`horizon / step` steps, the last one included).
        bound: least acceptable minimum TTC over an episode, s.
        cap: value reported when no collision is projected, s.
        stopped_speed: no TTC while the ego is slower than this, m/s.
        behind_angle_deg: agents whose bearing from the ego's rear axle exceeds
            this angle off its heading are behind and ignored.
    """

    step: float = 0.1
    horizon: float = 3.0
    bound: float = 0.95
    cap: float = 10.0
    stopped_speed: float = 5e-3
    behind_angle_deg: float = 150.0

    def __post_init__(self) -> None:
        _positive("TTCConfig", self, "step", "horizon", "bound", "stopped_speed")
        steps = self.horizon / self.step
        if abs(steps - round(steps)) > 1e-6:
            raise ConfigError(f"TTCConfig.horizon: expected a multiple of step={self.step}, got {self.horizon}")
        if self.cap < self.horizon:
            raise ConfigError(f"TTCConfig.cap: expected >= horizon={self.horizon} s, got {self.cap}")
        if not 0 < self.behind_angle_deg <= 180:
            raise ConfigError(f"TTCConfig.behind_angle_deg: expected in (0, 180], got {self.behind_angle_deg}")

    @property
    def num_steps(self) -> int:
        return round(self.horizon / self.step)


@dataclass(frozen=True)
class ComfortConfig:
    """Comfort bounds (nuPlan's `ego_is_comfortable`) and the smoothing window.

    Attributes:
        min_lon_accel, max_lon_accel: m/s^2.
        max_abs_lat_accel: m/s^2.
        max_abs_lon_jerk: m/s^3. 8.37 is nuPlan's bound on the jerk magnitude
            (its separate longitudinal-jerk bound is 4.13); applied here to the
            longitudinal jerk, as the issue specifies.
        max_abs_yaw_rate: rad/s.
        max_abs_yaw_accel: rad/s^2.
        window_s: moving-average window applied to every signal before the
            bounds are checked, s (nuPlan smooths with a Savitzky-Golay filter).
    """

    min_lon_accel: float = -4.05
    max_lon_accel: float = 2.40
    max_abs_lat_accel: float = 4.89
    max_abs_lon_jerk: float = 8.37
    max_abs_yaw_rate: float = 0.95
    max_abs_yaw_accel: float = 1.93
    window_s: float = 0.5

    def __post_init__(self) -> None:
        o = "ComfortConfig"
        _positive(o, self, "max_lon_accel", "max_abs_lat_accel", "max_abs_lon_jerk")
        _positive(o, self, "max_abs_yaw_rate", "max_abs_yaw_accel", "window_s")
        if not self.min_lon_accel < 0:
            raise ConfigError(f"{o}.min_lon_accel: expected < 0, got {self.min_lon_accel!r}")

    def window_steps(self, dt: float) -> int:
        return max(1, round(self.window_s / dt))


@dataclass(frozen=True)
class ProgressConfig:
    """Progress along the route, speed limit and the frozen-ego check.

    Attributes:
        score_threshold: nuPlan's `score_progress_threshold`, m: progress and its
            reference are floored at it, so a near-zero reference scores 1.
        making_progress_ratio: `making_progress` needs a ratio at least this.
        max_overspeed: nuPlan's `max_overspeed_value_threshold`, m/s (~5 mph).
        frozen_speed: the ego counts as frozen below this speed, m/s.
        frozen_lookahead: clear-corridor length beyond the ego's front bumper, m,
            plus the stopping distance at `frozen_decel`.
        frozen_decel: m/s^2, for that stopping distance.
        frozen_lateral_margin: m added to the half widths of ego and agent.
        corridor_points: points sampling the corridor centreline.
        route_end_margin: the route end counts as reached when the ego's front
            bumper is within this distance of it, m.
    """

    score_threshold: float = 2.0
    making_progress_ratio: float = 0.2
    max_overspeed: float = 2.23
    frozen_speed: float = 0.1
    frozen_lookahead: float = 15.0
    frozen_decel: float = 4.05
    frozen_lateral_margin: float = 0.5
    corridor_points: int = 11
    route_end_margin: float = 1.0

    def __post_init__(self) -> None:
        o = "ProgressConfig"
        _positive(o, self, "score_threshold", "making_progress_ratio", "max_overspeed")
        _positive(o, self, "frozen_speed", "frozen_lookahead", "frozen_decel")
        if self.frozen_lateral_margin < 0 or self.route_end_margin < 0:
            raise ConfigError(f"{o}: margins must be >= 0, got {self.frozen_lateral_margin}, {self.route_end_margin}")
        if not (isinstance(self.corridor_points, int) and self.corridor_points >= 2):
            raise ConfigError(f"{o}.corridor_points: expected an int >= 2, got {self.corridor_points!r}")


@dataclass(frozen=True)
class MetricsConfig:
    """Every metric threshold in one place; presets are `MetricsConfig()` (nuPlan)."""

    collision: CollisionConfig = field(default_factory=CollisionConfig)
    ttc: TTCConfig = field(default_factory=TTCConfig)
    comfort: ComfortConfig = field(default_factory=ComfortConfig)
    progress: ProgressConfig = field(default_factory=ProgressConfig)
    drivable_threshold: float = 0.5

    def __post_init__(self) -> None:
        parts = {"collision": CollisionConfig, "ttc": TTCConfig, "comfort": ComfortConfig, "progress": ProgressConfig}
        for name, cls in parts.items():
            value = getattr(self, name)
            if not isinstance(value, cls):
                raise ConfigError(f"MetricsConfig.{name}: expected a {cls.__name__}, got {type(value).__name__}")
        if not 0 < self.drivable_threshold <= 1:
            raise ConfigError(f"MetricsConfig.drivable_threshold: expected in (0, 1], got {self.drivable_threshold}")
