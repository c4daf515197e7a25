"""Configuration of the tracker: slots, history sampling and the filter's noise model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config import ConfigError, Timing, require
from sim.state import NUM_CLASSES

# The history sampling of the default `Timing`; a model for another one is built with `for_timing`.
_TIMING = Timing()


def _steps_per_sample(timing: Timing) -> int:
    """Tracker steps (one per policy period) between history samples."""
    return timing.sim_steps_per_sample // timing.policy_period_steps


def _require(cond: bool, name: str, expected: str, value: object) -> None:
    require(cond, "TrackerConfig", name, expected, value)


@dataclass(frozen=True)
class TrackerConfig:
    """Everything the tracker needs besides its inputs.

    Attributes:
        slots: A, track slots per episode.
        history_steps: H, history samples in `Tracks` (the current one included).
        steps_per_sample: tracker steps between history samples. The tracker runs
            every policy period (`Timing.sim_dt * policy_period_steps`) and the
            history is sampled every `Timing.sample_dt`, so the default is
            0.4 s / 0.1 s = 4. `step`'s `dt` must be the tracker period for the
            history spacing to be `Timing.sample_dt`.
        accel_std: per class (vehicle, pedestrian, cyclist), square root of the
            spectral density of the white acceleration driving the
            constant-velocity model, m/s^(3/2); a track uses the
            class-probability-weighted density.
        detection_prob: P_D, probability that an existing object yields a
            detection in a frame, in (0, 1).
        clutter_density: spatial density of detections no track explains (new
            objects and ghosts), 1/m^2. Sets how far from a prediction a
            detection still counts as that track's (the likelihood ratio
            against this density).
        mean_lifetime: s; each step an existing track survives with
            probability exp(-dt / mean_lifetime).
        association_iterations: belief-propagation sweeps for the marginal
            association probabilities (unrolled, so the graph stays static).
        attribute_memory: cap on the soft count of detections that class
            probabilities and size average over, so they can still change.
        merge_scale: two tracks whose positions lie within about this many standard deviations
            (of their combined position covariance) of each other are one object seen twice: the
            less likely one's existence is softly suppressed (`perception.tracking.merge`); 0 turns
            the suppression off.
    """

    slots: int = 32
    history_steps: int = _TIMING.history_steps
    steps_per_sample: int = _steps_per_sample(_TIMING)
    accel_std: tuple[float, ...] = (2.0, 1.0, 1.5)
    detection_prob: float = 0.8
    clutter_density: float = 1e-3
    mean_lifetime: float = 10.0
    association_iterations: int = 10
    attribute_memory: float = 10.0
    merge_scale: float = 1.0

    @classmethod
    def for_timing(cls, timing: Timing, **changes: Any) -> TrackerConfig:
        """The config whose history samples are `timing`'s (`changes` replace other fields)."""
        return cls(**{"history_steps": timing.history_steps, "steps_per_sample": _steps_per_sample(timing), **changes})

    def check_timing(self, timing: Timing) -> None:
        """Raise unless the history is sampled as `timing` says (else the predictor reads tracks whose spacing
        is not the one it was trained on, and nothing downstream could notice)."""
        want = (timing.history_steps, _steps_per_sample(timing))
        if (self.history_steps, self.steps_per_sample) != want:
            raise ConfigError(
                f"TrackerConfig: history_steps {self.history_steps}, steps_per_sample {self.steps_per_sample}, "
                f"but the Timing samples {want[0]} steps every {want[1]} tracker periods "
                "(build it with TrackerConfig.for_timing)"
            )

    def __post_init__(self) -> None:
        _require(isinstance(self.slots, int) and self.slots >= 1, "slots", "an int >= 1", self.slots)
        _require(
            isinstance(self.history_steps, int) and self.history_steps >= 2,
            "history_steps",
            "an int >= 2",
            self.history_steps,
        )
        _require(
            isinstance(self.steps_per_sample, int) and self.steps_per_sample >= 1,
            "steps_per_sample",
            "an int >= 1",
            self.steps_per_sample,
        )
        _require(
            len(self.accel_std) == NUM_CLASSES and all(s > 0 for s in self.accel_std),
            "accel_std",
            f"{NUM_CLASSES} values > 0 (vehicle, pedestrian, cyclist)",
            self.accel_std,
        )
        _require(0 < self.detection_prob < 1, "detection_prob", "in (0, 1)", self.detection_prob)
        _require(self.clutter_density > 0, "clutter_density", "> 0 per m^2", self.clutter_density)
        _require(self.mean_lifetime > 0, "mean_lifetime", "> 0 s", self.mean_lifetime)
        _require(
            isinstance(self.association_iterations, int) and self.association_iterations >= 1,
            "association_iterations",
            "an int >= 1",
            self.association_iterations,
        )
        _require(self.attribute_memory >= 1, "attribute_memory", ">= 1 detection", self.attribute_memory)
        _require(self.merge_scale >= 0, "merge_scale", ">= 0 (0: off)", self.merge_scale)

    @property
    def buffer_steps(self) -> int:
        """Tracker steps kept in the history buffer: the current one and (H-1) samples back."""
        return (self.history_steps - 1) * self.steps_per_sample + 1
