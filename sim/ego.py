"""The ego vehicle's footprint, written once: the default ego's dimensions (every scenario's, unless its
file says otherwise) and the box the planners assume for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EgoFootprint:
    """An ego's box and wheelbase, m (the box centre lies wheelbase / 2 ahead of the rear axle)."""

    length: float = 4.6
    width: float = 1.9
    wheelbase: float = 2.8


DEFAULT_EGO = EgoFootprint()

# The box the planners and proposal rules assume, whatever the scenario's ego: the default ego's rounded
# up (nuPlan's ego is 5.18 m x 2.30 m), as half-length and half-width, m.
EGO_HALF_LENGTH = 2.4
EGO_HALF_WIDTH = 1.0
# m: the rear axle behind the box centre; a contact behind it while the other closes in is not the ego's
# fault (`sim.metrics.step_metrics.CollisionMetric`).
EGO_REAR_AXLE = DEFAULT_EGO.wheelbase / 2
