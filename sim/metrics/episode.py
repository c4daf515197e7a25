"""Per-episode reduction of the step metrics, nuPlan-style, for a whole batch at once.

`EpisodeAccumulator.update(prev, state)` is pure: it returns a new accumulator
and touches no Python state, with no loops over episodes or agents.
`finalize()` turns the running sums into per-episode results; `docs/metrics.md`
defines each of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from core.config import Timing
from sim.metrics.config import MetricsConfig
from sim.metrics.step_metrics import COLLISION_CLASSES, StepMetrics
from sim.state import WorldState

COMFORT_SIGNALS = ("lon_accel", "lat_accel", "lon_jerk", "yaw_rate", "yaw_accel")
EPISODE_METRICS = ("collision", "ttc", "drivable_area", "comfort", "speed_limit", "frozen", "progress")


def comfort_bounds(cfg: MetricsConfig, like: Tensor) -> tuple[Tensor, Tensor]:
    """Lower and upper bounds [S] of `COMFORT_SIGNALS`."""
    c = cfg.comfort
    low = [c.min_lon_accel, -c.max_abs_lat_accel, -c.max_abs_lon_jerk, -c.max_abs_yaw_rate, -c.max_abs_yaw_accel]
    high = [c.max_lon_accel, c.max_abs_lat_accel, c.max_abs_lon_jerk, c.max_abs_yaw_rate, c.max_abs_yaw_accel]
    return like.new_tensor(low), like.new_tensor(high)


@dataclass(frozen=True)
class EpisodeAccumulator:
    """Running reductions for B episodes with N agent slots.

    Attributes:
        steps: [B] long, steps accumulated.
        collided: [B, N] bool, agents the ego has touched this episode (each counts once).
        collisions: [B] long, collisions of any fault.
        at_fault: [B, 4] long, at-fault collisions by `COLLISION_CLASSES`.
        min_ttc: [B] float, s.
        drivable: [B] bool, every step on drivable area.
        comfort_window: [B, W, S] float, the last W raw comfort signals, oldest first.
        comfort_ok: [B, S] bool, every full window's mean within bounds so far.
        overspeed_integral: [B] float, integral of the overspeed, m.
        progress: [B] float, m.
        frozen_steps: [B] long.
        route_remaining: [B] float, route ahead of the ego at its first step, m.
        speed_limit: [B] float, route speed limit at its first step, m/s.
        dt: sim step, s. metrics: the step metrics evaluated each step.
    """

    steps: Tensor
    collided: Tensor
    collisions: Tensor
    at_fault: Tensor
    min_ttc: Tensor
    drivable: Tensor
    comfort_window: Tensor
    comfort_ok: Tensor
    overspeed_integral: Tensor
    progress: Tensor
    frozen_steps: Tensor
    route_remaining: Tensor
    speed_limit: Tensor
    dt: float
    metrics: StepMetrics

    @property
    def config(self) -> MetricsConfig:
        return self.metrics.config

    @classmethod
    def init(
        cls,
        batch: int | WorldState,
        num_agents: int | None = None,
        device: torch.device | str | None = None,
        *,
        dt: float | None = None,
        config: MetricsConfig | None = None,
    ) -> EpisodeAccumulator:
        """An empty accumulator: `init(state)`, or `init(batch, num_agents, device, dt=...)`
        (dt defaults to `Timing().sim_dt`)."""
        if isinstance(batch, WorldState):
            batch, num_agents, device, dt = batch.batch_size, batch.num_agents, batch.device, batch.dt
        if num_agents is None:
            raise ValueError("EpisodeAccumulator.init: num_agents is required when batch is an int")
        dt = Timing().sim_dt if dt is None else dt
        config = config if config is not None else MetricsConfig()
        B, N, W, S = batch, num_agents, config.comfort.window_steps(dt), len(COMFORT_SIGNALS)
        f = dict(device=device, dtype=torch.float32)
        i = dict(device=device, dtype=torch.long)
        return cls(
            steps=torch.zeros(B, **i),
            collided=torch.zeros(B, N, device=device, dtype=torch.bool),
            collisions=torch.zeros(B, **i),
            at_fault=torch.zeros(B, len(COLLISION_CLASSES), **i),
            min_ttc=torch.full((B,), config.ttc.cap, **f),
            drivable=torch.ones(B, device=device, dtype=torch.bool),
            comfort_window=torch.zeros(B, W, S, **f),
            comfort_ok=torch.ones(B, S, device=device, dtype=torch.bool),
            overspeed_integral=torch.zeros(B, **f),
            progress=torch.zeros(B, **f),
            frozen_steps=torch.zeros(B, **i),
            route_remaining=torch.zeros(B, **f),
            speed_limit=torch.zeros(B, **f),
            dt=float(dt),
            metrics=StepMetrics(EPISODE_METRICS, config),
        )

    def update(self, prev: WorldState, state: WorldState, active: Tensor | None = None) -> EpisodeAccumulator:
        """Fold in the step `prev -> state`; episodes where `active [B]` is False are left as they are."""
        B, N = self.collided.shape
        if state.batch_size != B or state.num_agents != N:
            raise ValueError(
                f"EpisodeAccumulator.update: expected [{B}, {N}] episodes x agents, "
                f"got [{state.batch_size}, {state.num_agents}]"
            )
        if abs(state.dt - self.dt) > 1e-9:
            raise ValueError(f"EpisodeAccumulator.update: state.dt={state.dt} differs from the accumulator's {self.dt}")
        act = torch.ones(B, dtype=torch.bool, device=self.steps.device) if active is None else active.bool()
        v = self.metrics.compute(prev, state)
        first = act & (self.steps == 0)
        new_contact = v["contact"] & ~self.collided & act[:, None]  # (B, N)
        new_fault = new_contact & v["contact_at_fault"]
        by_class = torch.zeros_like(self.at_fault).scatter_add_(1, v["contact_class"], new_fault.long())  # (B, 4)
        # nuPlan reports TTC 0 at the step of an at-fault collision.
        ttc = torch.where(new_fault.any(-1), torch.zeros_like(v["ttc"]), v["ttc"])
        window, comfort_ok = self._comfort(v, act)
        actf = act.to(self.progress.dtype)
        return dataclasses.replace(
            self,
            steps=self.steps + act.long(),
            collided=self.collided | new_contact,
            collisions=self.collisions + new_contact.sum(-1),
            at_fault=self.at_fault + by_class,
            min_ttc=torch.where(act, torch.minimum(self.min_ttc, ttc), self.min_ttc),
            drivable=self.drivable & (v["drivable"] | ~act),
            comfort_window=window,
            comfort_ok=comfort_ok,
            overspeed_integral=self.overspeed_integral + v["overspeed"] * self.dt * actf,
            progress=self.progress + v["progress_delta"] * actf,
            frozen_steps=self.frozen_steps + (v["frozen"] & act).long(),
            route_remaining=torch.where(first, v["route_remaining_before"], self.route_remaining),
            speed_limit=torch.where(first, v["speed_limit"], self.speed_limit),
        )

    def _comfort(self, v: dict[str, Tensor], act: Tensor) -> tuple[Tensor, Tensor]:
        """Shift the step's signals into the window; check the window mean once it is full."""
        signals = torch.stack([v[k] for k in COMFORT_SIGNALS], dim=-1)  # (B, S)
        shifted = torch.cat((self.comfort_window[:, 1:], signals[:, None]), dim=1)  # (B, W, S)
        window = torch.where(act[:, None, None], shifted, self.comfort_window)
        low, high = comfort_bounds(self.config, signals)
        mean = window.mean(1)  # (B, S)
        within = (mean >= low) & (mean <= high)
        checked = act & (self.steps + 1 >= window.shape[1])  # (B,)
        return window, self.comfort_ok & (within | ~checked[:, None])

    def _comfortable(self) -> Tensor:
        """[B] bool; an episode shorter than the window is judged on the mean of its steps."""
        W = self.comfort_window.shape[1]
        low, high = comfort_bounds(self.config, self.comfort_window)
        mean = self.comfort_window.sum(1) / self.steps.clamp_min(1)[:, None]  # zeros fill unused slots
        short = ((self.steps > 0) & (self.steps < W))[:, None]
        ok = torch.where(short, (mean >= low) & (mean <= high), self.comfort_ok)
        return ok.all(-1)

    def finalize(
        self, state: WorldState | None = None, *, reference_progress: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Per-episode results, each [B]; see `docs/metrics.md`.

        Args:
            state: the final state, optional; only checked against the batch size.
            reference_progress: [B] m, progress of a reference (expert) run; when
                None the reference is the route left at the start, capped at
                speed limit x duration.
        """
        B = self.steps.shape[0]
        if state is not None and state.batch_size != B:
            raise ValueError(f"EpisodeAccumulator.finalize: state has {state.batch_size} episodes, expected {B}")
        cfg = self.config
        duration = self.steps.to(self.progress.dtype) * self.dt
        reference = self._reference(reference_progress, duration)
        thr = cfg.progress.score_threshold
        ratio = self.progress.clamp_min(thr) / reference.clamp_min(thr)
        ratio = torch.where(self.progress < 0, torch.zeros_like(ratio), ratio)
        allowance = cfg.progress.max_overspeed * duration
        speed_ok = 1.0 - self.overspeed_integral / allowance.clamp_min(1e-9)
        speed_ok = torch.where(duration > 0, speed_ok.clamp(0.0, 1.0), torch.ones_like(speed_ok))
        at_fault_total = self.at_fault.sum(-1)
        results = {
            "duration": duration,
            "collisions": self.collisions,
            "at_fault_collisions": at_fault_total,
            **{f"at_fault_{name}": self.at_fault[:, i] for i, name in enumerate(COLLISION_CLASSES)},
            "collided": at_fault_total > 0,
            "min_ttc": self.min_ttc,
            "ttc_within_bound": self.min_ttc >= cfg.ttc.bound,
            "drivable_area_compliance": self.drivable,
            "comfortable": self._comfortable(),
            "overspeed_integral": self.overspeed_integral,
            "speed_limit_compliance": speed_ok,
            "progress": self.progress,
            "reference_progress": reference,
            "progress_ratio": ratio,
            "making_progress": ratio >= cfg.progress.making_progress_ratio,
            "frozen_fraction": self.frozen_steps.to(duration.dtype) / self.steps.clamp_min(1).to(duration.dtype),
        }
        return results

    def _reference(self, reference_progress: Tensor | None, duration: Tensor) -> Tensor:
        if reference_progress is None:
            return torch.minimum(self.route_remaining, self.speed_limit * duration)
        ref = torch.as_tensor(reference_progress, dtype=self.progress.dtype, device=self.progress.device)
        if ref.shape != self.progress.shape or not bool(torch.isfinite(ref).all()):
            raise ValueError(
                f"finalize: reference_progress must be finite with shape "
                f"{tuple(self.progress.shape)}, got {tuple(ref.shape)}"
            )
        return ref
