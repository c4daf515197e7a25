"""`Planner`: a forecast distribution and a sensor frame in, a `Plan` out, with sigma as an input.

    plan = Planner(PlannerConfig())(forecast, frame, sigma, agent_size=tracks.size, previous=previous_plan)

One step reads as PDM-Closed's, with the forecast's whole distribution where
PDM-Closed has thresholded objects:

1. Observe: every agent's outcomes (forecast modes, or samples from
   caller-supplied noise) with their probabilities, existence included
   (`planning.agents`).
2. Propose and drive: the proposals shared with the rule-based baseline
   (`sim.proposals`: IDM along offset paths and lane changes behind the leader
   at a quantile of each agent's outcomes, a controlled and an emergency stop,
   the previous plan), each driven through the simulator's tracking controller
   and bicycle, so what is scored is what will be driven.
3. Score: the deterministic costs (progress, lane, comfort, speed limit,
   drivable area, consistency with the previous plan; `planning.costs`) plus,
   per agent, the entropic risk R_sigma of its interaction cost (collision,
   headway, yielding; `planning.interaction`) over the outcomes "absent" and
   each mode, weighted by existence (`planning.risk`).
4. Choose: weights softmax(-risk / temperature) over the proposals. In training
   the plan is their weighted average (smooth in every input, so a planning
   loss reaches the predictor and the detector); at execution it is the
   proposal of least risk. Nothing upstream of this choice thresholds or
   takes an argmax.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from core.config import Timing
from planning.agents import AgentFutures, agent_futures, near_route, nearest_agents
from planning.config import PlannerConfig
from planning.costs import deterministic_costs
from planning.interaction import interaction_costs
from planning.risk import check_sigma, entropic_risk, with_existence
from planning.types import Plan
from prediction.types import Forecast
from sim.config import RasterConfig
from sim.proposals import PreviousPlan, Proposals, Reference, generate
from sim.types import SensorFrame

# Footprint (length, width) assumed per class when the caller passes no sizes: vehicle, pedestrian, cyclist.
DEFAULT_SIZES = ((4.5, 1.9), (0.6, 0.6), (1.8, 0.6))


_UNCHECKED_DEPTH = [0]


@contextlib.contextmanager
def unchecked() -> Iterator[None]:
    """Skip the data-dependent input checks inside (their host reads cannot be captured in a CUDA graph);
    for callers that validated the inputs already."""
    _UNCHECKED_DEPTH[0] += 1
    try:
        yield
    finally:
        _UNCHECKED_DEPTH[0] -= 1


def checking() -> bool:
    """Whether data-dependent input checks may run (not while tracing, exporting or capturing a graph)."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)()
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling() or exporting or _UNCHECKED_DEPTH[0])


class Planner(nn.Module):
    """The risk-sensitive planner; it has no learned parameters, but it is differentiable in its inputs."""

    def __init__(
        self, cfg: PlannerConfig = PlannerConfig(), timing: Timing = Timing(), raster: RasterConfig = RasterConfig()
    ):
        super().__init__()
        self.cfg, self.timing, self.raster = cfg, timing, raster
        self.register_buffer("class_size", torch.tensor(DEFAULT_SIZES), persistent=False)

    def forward(
        self,
        forecast: Forecast,
        frame: SensorFrame,
        sigma: Tensor,
        agent_size: Tensor | None = None,
        noise: tuple[Tensor, Tensor] | None = None,
        previous: PreviousPlan | None = None,
    ) -> Plan:
        """The plan for every batch element.

        Args:
            forecast: the agents' futures, ego frame now.
            frame: the sensor frame (route, map raster, ego speed and acceleration, speed limit).
            sigma: [B] or scalar risk sensitivity (finite; > 0 averse, 0 neutral, < 0 seeking).
            agent_size: [B, A, 2] box (length, width) per agent, m (`Tracks.size`); None uses
                class-probability-weighted defaults.
            noise: (noise_mode [B, A, S], noise_pos [B, A, S, T, 2]) for `Forecast.sample`: the risk
                is then over S equally likely samples per agent instead of the K modes.
            previous: the plan chosen at the last step (`PreviousPlan.remember`), or None.
        """
        B = frame.ego_speed.shape[0]
        if checking():
            sigma = check_sigma(sigma, B)
            self._check_inputs(forecast, frame, previous)
        sigma = torch.as_tensor(sigma, dtype=frame.ego_speed.dtype, device=frame.ego_speed.device).expand(B)
        if agent_size is None:
            agent_size = forecast.class_probs @ self.class_size.to(forecast.class_probs.dtype)
        agents = agent_futures(forecast, agent_size, noise, self.cfg.sample_position_std, self.timing.sample_dt)
        agents = near_route(agents, frame.route, self.cfg.leader_agents)
        proposals = generate(frame, agents.obstacles(), previous, self.cfg.proposals, self.timing, self.raster)
        # Agents near proposals that do not exist (a lane change without a lane, no previous plan yet) must not
        # take the interaction terms' slots: those proposals are looked at where the first one drives.
        usable = torch.where(proposals.valid[..., None, None], proposals.driven.xy, proposals.driven.xy[:, :1])
        risk = self.risk(proposals, frame, nearest_agents(agents, usable, self.cfg.max_agents), sigma)
        return self.plan(proposals, risk, sigma)

    def _check_inputs(self, forecast: Forecast, frame: SensorFrame, previous: PreviousPlan | None) -> None:
        T = self.timing.horizon_steps
        if forecast.horizon_steps != T:
            raise ValueError(
                f"forecast.means: expected {T} future steps (Timing.horizon_steps), got {forecast.horizon_steps}"
            )
        if forecast.log_weights.shape[0] != frame.ego_speed.shape[0]:
            raise ValueError(
                f"forecast: expected batch {frame.ego_speed.shape[0]} (the frame's), "
                f"got {forecast.log_weights.shape[0]}"
            )
        forecast.validate()
        frame.validate()
        if previous is not None:
            previous.validate()

    def risk(self, proposals: Proposals, frame: SensorFrame, agents: AgentFutures, sigma: Tensor) -> Tensor:
        """[B, C] entropic risk of each proposal's total cost."""
        interaction = interaction_costs(proposals.driven, agents, self.cfg, self.timing.sample_dt)  # (B, C, A, M)
        C = interaction.shape[1]
        log_prob = agents.log_prob[:, None].expand(-1, C, -1, -1)
        existence = agents.existence[:, None].expand(-1, C, -1)
        outcomes, outcome_log_prob = with_existence(interaction, log_prob, existence)
        per_agent = entropic_risk(outcomes, outcome_log_prob, sigma[:, None, None])  # (B, C, A)
        return deterministic_costs(proposals, frame, self.cfg, self.raster) + per_agent.sum(-1)

    def plan(self, proposals: Proposals, risk: Tensor, sigma: Tensor) -> Plan:
        """Softmin weights over proposals; the weighted average in training, the least risk at execution."""
        weights = torch.softmax(-risk / self.cfg.softmin_temperature, dim=-1)  # (B, C)
        chosen = risk.argmin(-1)
        ref, driven = proposals.reference, proposals.driven
        poses = torch.cat((ref.xy, ref.yaw.unsqueeze(-1)), dim=-1)  # (B, C, T, 3)
        curvature = driven.yaw_rate / driven.speed.clamp_min(0.5)
        controls = torch.stack((driven.accel, curvature), dim=-1)  # (B, C, T, 2)
        if self.training:
            w = weights[:, :, None, None]
            trajectory, speed, control = (poses * w).sum(1), (ref.speed * w[..., 0]).sum(1), (controls * w).sum(1)
        else:
            trajectory, speed, control = (_take(x, chosen) for x in (poses, ref.speed, controls))
        return Plan(
            trajectory=trajectory,
            speed=speed,
            controls=control,
            candidates=torch.cat((driven.xy, driven.yaw.unsqueeze(-1)), dim=-1),
            candidate_risk=risk,
            candidate_weights=weights,
            chosen=chosen,
            sigma=sigma,
        )


def remember(plan: Plan, frame: SensorFrame) -> PreviousPlan:
    """The plan kept for the next step (`PreviousPlan`), world frame."""
    return PreviousPlan.remember(Reference(plan.trajectory[..., :2], plan.trajectory[..., 2], plan.speed), frame)


def _take(values: Tensor, index: Tensor) -> Tensor:
    """values[b, index[b]] for values [B, C, ...].

    `select`, not `squeeze`: traced under a dynamic batch, squeeze exports as an ONNX If (the size of
    the axis is unknown to the exporter), which TensorRT's parser rejects."""
    shape = (index.shape[0], 1, *values.shape[2:])
    return values.gather(1, index.reshape(-1, *([1] * (values.dim() - 1))).expand(shape)).select(1, 0)
