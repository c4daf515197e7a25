"""Contract owned by planning: `Plan`, the ego's trajectory and how it was chosen.

Poses are in the ego frame at the current time (x forward, y left, yaw
counter-clockwise), SI units; step t lies `(t + 1) * Timing.sample_dt` seconds
ahead (step 0 is the first future step). The plan keeps every candidate with
its entropic risk and weight, so the choice can be audited and differentiated.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from core.contracts import ContractError, TensorContract, check_simplex, spec

# Named slices into poses (x, y, yaw) and controls (accel, curvature).
POSE_XY = slice(0, 2)
POSE_YAW = 2
CONTROL_ACCEL = 0
CONTROL_CURVATURE = 1


@dataclass(frozen=True)
class Plan(TensorContract):
    """The ego's plan for one policy step, with the candidates it was chosen from.

    Attributes:
        trajectory: [B, T, 3] float, ego pose (x m, y m, yaw rad) of the box
            centre (the ego frame's origin, as `sim.policies.PolicyOutput`) per
            future step, ego frame at the current time; read with `POSE_XY` / `POSE_YAW`.
        speed: [B, T] float, longitudinal speed along the plan, m/s.
        controls: [B, T, 2] float, (longitudinal acceleration m/s^2, curvature
            1/m, left > 0) applied over each step; read with `CONTROL_ACCEL` /
            `CONTROL_CURVATURE`.
        candidates: [B, K, T, 3] float, every candidate trajectory scored, same
            layout and frame as `trajectory`.
        candidate_risk: [B, K] float, entropic risk R_sigma of each candidate's
            cost, cost units (finite; lower is better).
        candidate_weights: [B, K] float in [0, 1], the planner's weights over
            candidates (how much each contributes to the plan); each row sums to 1.
        chosen: [B] long in [0, K), the candidate the plan follows or is
            closest to.
        sigma: [B] float, risk sensitivity used (> 0 risk-averse, 0 neutral,
            < 0 risk-seeking), 1/cost units.
    """

    trajectory: Tensor = spec(("B", "T", 3))
    speed: Tensor = spec(("B", "T"))
    controls: Tensor = spec(("B", "T", 2))
    candidates: Tensor = spec(("B", "K", "T", 3))
    candidate_risk: Tensor = spec(("B", "K"))
    candidate_weights: Tensor = spec(("B", "K"), prob=True)
    chosen: Tensor = spec(("B",), "long", low=0)
    sigma: Tensor = spec(("B",))

    @property
    def horizon_steps(self) -> int:
        return int(self.trajectory.shape[1])

    @property
    def num_candidates(self) -> int:
        return int(self.candidate_risk.shape[1])

    @property
    def chosen_candidate(self) -> Tensor:
        """[B, T, 3] float, the candidate trajectory at `chosen`."""
        index = self.chosen[:, None, None, None].expand(-1, 1, self.horizon_steps, 3)
        return self.candidates.gather(1, index).squeeze(1)

    def _check(self, sizes: dict[str, int]) -> None:
        check_simplex("Plan.candidate_weights", self.candidate_weights)
        K = sizes["K"]
        if bool((self.chosen >= K).any()):
            raise ContractError(f"Plan.chosen: expected indices in [0, {K}), max is {int(self.chosen.max())}")
