"""What a driving policy sees and returns in the closed-loop simulator.

A policy is queried once per policy period with an `Observation` and its own
recurrent state, and returns a trajectory in the ego frame that the simulator's
tracking controller follows. The simulator knows nothing of planning: the
driving stack plugs in through the same interface (see `stack`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from torch import Tensor

from sim.types import ObjectList, SensorFrame


@dataclass(frozen=True)
class Observation:
    """Inputs a policy may read; the runner fills only those the policy asks for.

    Attributes:
        frame: the sensor frame (rasters, ego state, route), always present.
        ground_truth: every agent in the ego frame (oracle input), or None.
        detections: the noisy object-level sensor's output, or None.
    """

    frame: SensorFrame
    ground_truth: ObjectList | None = None
    detections: ObjectList | None = None


@dataclass(frozen=True)
class Overlay:
    """What a policy exposes for rendering, all in the ego frame (optional pieces).

    Attributes:
        objects_xy: [B, M, 2] object centres the policy believed in, m.
        objects_cov: [B, M, 2, 2] their position covariances, m^2 (ellipses), or None.
        objects_prob: [B, M] existence probabilities in [0, 1].
        forecasts: [B, A, K, T, 2] forecast mode means, m.
        forecast_weights: [B, A, K] mode probabilities.
        candidates: [B, C, T, 2] candidate ego trajectories considered.
        candidate_weights: [B, C] their weights (or scores) in [0, 1].
        candidate_risk: [B, C] each candidate's risk (the stack's entropic risk; lower is safer).
        chosen: [B] long, the candidate the plan follows.
        sigma: [B] the risk sensitivity the plan was made at.
        tracks_xy: [B, A, 2] the tracker's current positions of its tracks, m.
        tracks_cov: [B, A, 2, 2] their position covariances, m^2.
        tracks_prob: [B, A] their existence probabilities in [0, 1].
    """

    objects_xy: Tensor | None = None
    objects_cov: Tensor | None = None
    objects_prob: Tensor | None = None
    forecasts: Tensor | None = None
    forecast_weights: Tensor | None = None
    candidates: Tensor | None = None
    candidate_weights: Tensor | None = None
    candidate_risk: Tensor | None = None
    chosen: Tensor | None = None
    sigma: Tensor | None = None
    tracks_xy: Tensor | None = None
    tracks_cov: Tensor | None = None
    tracks_prob: Tensor | None = None


@dataclass(frozen=True)
class PolicyOutput:
    """A planned ego trajectory.

    Attributes:
        trajectory: [B, T, 2] positions of the ego's box centre in the ego frame
            at the current time (origin at the box centre, x forward, y left), m;
            step t is `(t + 1) * Timing.sample_dt` ahead.
        speeds: [B, T] planned speeds at those steps, m/s (None: from spacing).
        overlay: drawables for rendering.
    """

    trajectory: Tensor
    speeds: Tensor | None = None
    overlay: Overlay = field(default_factory=Overlay)


class Policy(Protocol):
    """A closed-loop driving policy.

    `inputs` names the optional observation parts it reads ("ground_truth",
    "detections"); the runner computes only those. `initial_state` returns the
    policy's recurrent state for a batch (None when it has none), and `act` is
    a pure function of (state, observation).
    """

    name: ClassVar[str]
    inputs: ClassVar[frozenset[str]]

    def initial_state(self, batch: int, device: Any) -> Any: ...

    def act(self, state: Any, obs: Observation) -> tuple[PolicyOutput, Any]: ...
