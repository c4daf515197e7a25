"""`Planner`: a forecast distribution and a sensor frame in, a `Plan` out, with sigma as an input.

    plan = Planner(PlannerConfig())(forecast, frame, sigma)

1. A lattice of candidates along the route (`planning.lattice`): target speeds x lateral offsets.
2. Each candidate's risk: the deterministic costs (progress, lane keeping,
   drivable area, comfort, speed limit) plus, per agent, the entropic risk
   R_sigma of its collision cost over the outcomes "absent" and each forecast
   mode (or each sample drawn from caller-supplied noise), weighted by the
   agent's existence probability (`planning.costs`, `planning.risk`).
3. A fixed number of gradient steps on every candidate's (target speed,
   offset), the gradient from central differences of the risk: plain tensor
   ops unrolled a fixed number of times, so the planner exports and the steps
   are themselves differentiable for end-to-end training.
4. Weights softmax(-risk / temperature) over the candidates. In training the
   plan is their weighted average (smooth in every input); at execution it is
   the candidate of least risk.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from planning.collision import motion_heading
from planning.config import PlannerConfig
from planning.costs import (
    AgentFutures,
    collision_costs,
    comfort_cost,
    drivable_cost,
    lane_cost,
    progress_cost,
    speed_limit_cost,
)
from planning.lattice import OFFSET, TARGET_SPEED, Candidates, constant, initial_parameters, rollout
from planning.risk import check_sigma, entropic_risk, with_existence
from planning.types import Plan
from prediction.types import Forecast
from sim.config import RasterConfig, Timing
from sim.mat2 import Mat2
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
    ) -> Plan:
        """The plan for every batch element.

        Args:
            forecast: the agents' futures, ego frame now.
            frame: the sensor frame (route, map raster, ego speed, speed limit).
            sigma: [B] or scalar risk sensitivity (finite; > 0 averse, 0 neutral, < 0 seeking).
            agent_size: [B, A, 2] box (length, width) per agent, m (`Tracks.size`); None uses
                class-probability-weighted defaults.
            noise: (noise_mode [B, A, S], noise_pos [B, A, S, T, 2]) for `Forecast.sample`: the risk
                is then over S equally likely samples per agent instead of the K modes.
        """
        B = frame.ego_speed.shape[0]
        if checking():
            sigma = check_sigma(sigma, B)
            self._check_inputs(forecast, frame)
        sigma = torch.as_tensor(sigma, dtype=frame.ego_speed.dtype, device=frame.ego_speed.device).expand(B)
        theta = initial_parameters(frame, self.cfg)
        C = theta.shape[1]
        # The lattice and the first refinement's probes are rolled out and scored in one batch of
        # candidates: one pass through the cost graph instead of two (half the ops in an export).
        probes = self.probes(theta) if self.cfg.refine_steps else theta[:, :0]
        everything = rollout(frame, torch.cat((theta, probes), dim=1), self.cfg, self.timing)
        candidates = _take_candidates(everything, slice(0, C))
        agents = nearest_agents(self.agent_futures(forecast, agent_size, noise), candidates, self.cfg.max_agents)
        all_risk = self.risk(everything, frame, agents, sigma)
        risk, probe_risk = all_risk[:, :C], all_risk[:, C:]
        for step in range(self.cfg.refine_steps):
            if step:
                probe_risk = self.risk(rollout(frame, self.probes(theta), self.cfg, self.timing), frame, agents, sigma)
            theta, candidates, risk = self.refine(theta, candidates, risk, probe_risk, frame, agents, sigma)
        return self.plan(candidates, risk, sigma)

    def _check_inputs(self, forecast: Forecast, frame: SensorFrame) -> None:
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

    def agent_futures(
        self, forecast: Forecast, agent_size: Tensor | None, noise: tuple[Tensor, Tensor] | None
    ) -> AgentFutures:
        """The collision term's view of the forecast: its modes, or samples from `noise`."""
        log_weights, means, chol = forecast._safe()
        existence = torch.where(forecast.valid, forecast.existence, torch.zeros_like(forecast.existence))
        if agent_size is None:
            agent_size = forecast.class_probs @ self.class_size.to(forecast.class_probs.dtype)
        if noise is None:
            factor = Mat2.of(chol)
            cov = factor.mm(factor.T).tensor()
            log_prob = log_weights
        else:
            means = forecast.sample(*noise)  # (B, A, S, T, 2)
            S = means.shape[2]
            blur = self.cfg.sample_position_std**2 * torch.eye(2, dtype=means.dtype, device=means.device)
            cov = blur.expand(*means.shape[:-1], 2, 2)
            log_prob = torch.full(means.shape[:3], -math.log(S), dtype=means.dtype, device=means.device)
        heading, trust = motion_heading(means, self.timing.sample_dt)
        return AgentFutures(means, cov, heading, trust, log_prob, existence, agent_size)

    def deterministic_cost(self, candidates: Candidates, frame: SensorFrame) -> Tensor:
        """[B, C] the costs that do not depend on the other agents."""
        cfg, timing = self.cfg, self.timing
        return (
            progress_cost(candidates, frame, timing, cfg)
            + lane_cost(candidates, cfg)
            + comfort_cost(candidates, timing, cfg)
            + speed_limit_cost(candidates, frame, cfg)
            + drivable_cost(candidates, frame, self.raster, cfg)
        )

    def risk(self, candidates: Candidates, frame: SensorFrame, agents: AgentFutures, sigma: Tensor) -> Tensor:
        """[B, C] entropic risk of each candidate's total cost."""
        collision = collision_costs(candidates, agents, self.cfg)  # (B, C, A, M)
        C = collision.shape[1]
        log_prob = agents.log_prob[:, None].expand(-1, C, -1, -1)
        existence = agents.existence[:, None].expand(-1, C, -1)
        outcomes, outcome_log_prob = with_existence(collision, log_prob, existence)
        per_agent = entropic_risk(outcomes, outcome_log_prob, sigma[:, None, None])  # (B, C, A)
        return self.deterministic_cost(candidates, frame) + per_agent.sum(-1)

    def probes(self, theta: Tensor) -> Tensor:
        """[B, 4C, 2] the central-difference probes of theta [B, C, 2]: +h on each parameter, then -h."""
        h = constant(self.cfg.finite_difference, theta)  # one step per parameter
        eye = torch.eye(2, dtype=theta.dtype, device=theta.device) * h  # row i perturbs parameter i
        probes = torch.cat((theta[:, None] + eye[None, :, None], theta[:, None] - eye[None, :, None]), dim=1)
        return probes.reshape(theta.shape[0], 4 * theta.shape[1], 2)

    def refine(
        self,
        theta: Tensor,
        candidates: Candidates,
        risk: Tensor,
        probe_risk: Tensor,
        frame: SensorFrame,
        agents: AgentFutures,
        sigma: Tensor,
    ) -> tuple[Tensor, Candidates, Tensor]:
        """One gradient step on theta [B, C, 2], the gradient from central differences of the risk
        (`probe_risk [B, 4C]`, the risk of `probes(theta)`).

        A step is kept only where it lowers the candidate's risk, so refinement never makes a
        candidate worse (a fixed step size can overshoot). Returns the new (theta, candidates, risk).
        """
        cfg = self.cfg
        B, C, _ = theta.shape
        h = constant(cfg.finite_difference, theta)
        probe_risk = probe_risk.reshape(B, 4, C)
        gradient = ((probe_risk[:, :2] - probe_risk[:, 2:]) / (2 * h[None, :, None])).transpose(1, 2)  # (B, C, 2)
        limit = constant(cfg.refine_max_step, theta)
        step = torch.maximum(torch.minimum(constant(cfg.refine_lr, theta) * gradient, limit), -limit)
        moved = theta - step
        moved = torch.stack((moved[..., TARGET_SPEED].clamp_min(0.0), moved[..., OFFSET]), dim=-1)
        moved_candidates = rollout(frame, moved, cfg, self.timing)
        moved_risk = self.risk(moved_candidates, frame, agents, sigma)
        better = moved_risk < risk  # (B, C)
        keep = better[..., None]
        chosen = Candidates(**{name: _where(better, getattr(moved_candidates, name), getattr(candidates, name))
                               for name in Candidates.__dataclass_fields__})  # fmt: skip
        return torch.where(keep, moved, theta), chosen, torch.where(better, moved_risk, risk)

    def plan(self, candidates: Candidates, risk: Tensor, sigma: Tensor) -> Plan:
        """Softmin weights over candidates; the weighted average in training, the minimum at execution."""
        weights = torch.softmax(-risk / self.cfg.softmin_temperature, dim=-1)  # (B, C)
        chosen = risk.argmin(-1)
        poses = candidates.poses  # (B, C, T, 3)
        controls = torch.stack((candidates.accel, candidates.curvature), dim=-1)  # (B, C, T, 2)
        if self.training:
            w = weights[:, :, None, None]
            trajectory, speed, control = (
                (poses * w).sum(1),
                (candidates.speed * w[..., 0]).sum(1),
                (controls * w).sum(1),
            )
        else:
            trajectory, speed, control = (_take(x, chosen) for x in (poses, candidates.speed, controls))
        return Plan(
            trajectory=trajectory,
            speed=speed,
            controls=control,
            candidates=poses,
            candidate_risk=risk,
            candidate_weights=weights,
            chosen=chosen,
            sigma=sigma,
        )


def _take_candidates(candidates: Candidates, rows: slice) -> Candidates:
    """The candidates in `rows` of axis 1."""
    return Candidates(**{name: getattr(candidates, name)[:, rows] for name in Candidates.__dataclass_fields__})


def _where(condition: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """`torch.where` with `condition [B, C]` broadcast over the trailing dims of a and b."""
    return torch.where(condition.reshape(*condition.shape, *([1] * (a.dim() - 2))), a, b)


def nearest_agents(agents: AgentFutures, candidates: Candidates, count: int) -> AgentFutures:
    """The `count` agents that come closest to any candidate (by their outcome means, minus their
    half-diagonal), so the collision term's cost scales with `count`, not the tracker's slots.

    Selecting agents is top-k with the probabilities travelling along (DESIGN.md): every selected
    agent keeps its whole distribution. Agents that cannot be real (existence 0) rank last.
    """
    A = agents.means.shape[1]
    if count >= A:
        return agents
    with torch.no_grad():
        gap = candidates.xy[:, :, None, None] - agents.means[:, None]  # (B, C, A, M, T, 2)
        # The square root after the minimum (it is monotonic): one per agent instead of one per point.
        nearest = (gap[..., 0] ** 2 + gap[..., 1] ** 2).flatten(3).amin(-1).amin(1).sqrt()  # (B, A)
        closest = nearest - 0.5 * agents.size.norm(dim=-1)
        closest = torch.where(agents.existence > 0, closest, torch.full_like(closest, float("inf")))
        index = torch.topk(closest, count, dim=1, largest=False).indices  # (B, count)
    return agents.select(index)


def _take(values: Tensor, index: Tensor) -> Tensor:
    """values[b, index[b]] for values [B, C, ...].

    `select`, not `squeeze`: traced under a dynamic batch, squeeze exports as an ONNX If (the size of
    the axis is unknown to the exporter), which TensorRT's parser rejects."""
    shape = (index.shape[0], 1, *values.shape[2:])
    return values.gather(1, index.reshape(-1, *([1] * (values.dim() - 1))).expand(shape)).select(1, 0)
