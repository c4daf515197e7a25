"""The tracker: a Kalman filter with soft (JIPDA-style) association, as a pure step function.

`Tracker.step(state, detections, ego_pose, dt) -> (tracks, new_state)` runs,
in order: ego-motion compensation, constant-velocity prediction, association
marginals, the PDA update with existence and attribute updates, soft suppression
of duplicate tracks, births, and the history buffer. Every stage is a pure function of a `TrackerState`; shapes
are static and nothing branches on tensor values, so a step traces and exports.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from perception.tracking import birth, history
from perception.tracking.association import Marginals, association_marginals, hypothesis_weights, pair_geometry
from perception.tracking.config import TrackerConfig
from perception.tracking.merge import duplicate_suppression
from perception.tracking.motion import change_frame, predict, relative_motion
from perception.tracking.state import TrackerState
from perception.tracking.update import average_attribute, existence_update, pda_update
from perception.types import STATE_DIM, STATE_POS, Detections, Tracks
from sim.state import NUM_CLASSES


def usable_detections(det: Detections) -> Detections:
    """Empty slots replaced by harmless filler with existence 0, so no NaN or odd covariance leaks in."""
    valid = det.valid
    eye = torch.eye(2, dtype=det.position.dtype, device=det.position.device)
    v1, v2 = valid.unsqueeze(-1), valid[..., None, None]
    return dataclasses.replace(
        det,
        existence=torch.where(valid, det.existence, torch.zeros_like(det.existence)),
        class_probs=torch.where(v1, det.class_probs, torch.full_like(det.class_probs, 1.0 / det.class_probs.shape[-1])),
        position=torch.where(v1, det.position, torch.zeros_like(det.position)),
        position_cov=torch.where(v2, det.position_cov, eye),
        velocity=torch.where(v1, det.velocity, torch.zeros_like(det.velocity)),
        velocity_cov=torch.where(v2, det.velocity_cov, eye),
        size=torch.where(v1, det.size, torch.ones_like(det.size)),
    )


def _block_diag(top: Tensor, bottom: Tensor) -> Tensor:
    """[..., 4, 4] from two [..., 2, 2] blocks."""
    zeros = torch.zeros_like(top)
    return torch.cat((torch.cat((top, zeros), -1), torch.cat((zeros, bottom), -1)), -2)


def _renormalise(probs: Tensor) -> Tensor:
    """Rows divided by their sum: a convex combination can round to 1 + 1e-7, outside [0, 1]."""
    return probs / probs.sum(-1, keepdim=True)


class Tracker(nn.Module):
    """Multi-object tracker over fixed slots; no learnable parameters."""

    def __init__(self, config: TrackerConfig = TrackerConfig()):
        super().__init__()
        self.config = config
        accel_var = torch.tensor([s**2 for s in config.accel_std], dtype=torch.float32)
        self.register_buffer("accel_var", accel_var, persistent=False)  # (3,) m^2/s^3 per class
        indices = history.sample_indices(config.history_steps, config.steps_per_sample, torch.device("cpu"))
        self.register_buffer("sample_index", indices, persistent=False)  # (H,)

    def initial_state(
        self, batch: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> TrackerState:
        """The state before the first step: every slot empty."""
        return TrackerState.empty(batch, self.config.slots, self.config.buffer_steps, device, dtype)

    def forward(
        self, state: TrackerState, detections: Detections, ego_pose: Tensor, dt: Tensor | float
    ) -> tuple[Tracks, TrackerState]:
        return self.step(state, detections, ego_pose, dt)

    def step(
        self, state: TrackerState, detections: Detections, ego_pose: Tensor, dt: Tensor | float
    ) -> tuple[Tracks, TrackerState]:
        """One tracker period.

        Args:
            state: from `initial_state` or the previous step.
            detections: [B, N] this frame's detections, ego frame at the current time.
            ego_pose: [B, 3] world (x m, y m, yaw rad) of the ego centre now
                (`SensorFrame.ego_pose`); the motion since the last step comes from
                the pose kept in `state`.
            dt: s since the last step, a float or a [B] tensor (pass a tensor when exporting);
                history samples are `steps_per_sample` steps apart, so it should be the
                tracker period the config assumes.
        Returns:
            (tracks, new_state).
        """
        self._check_inputs(state, detections, ego_pose)
        # [B] or [1]: every use broadcasts over the batch (no Python int, so the batch stays dynamic in a trace).
        # A float becomes a fill, not a host-to-device copy (which a CUDA graph cannot capture).
        if isinstance(dt, Tensor):
            dt = dt.to(dtype=state.mean.dtype, device=state.mean.device).reshape(-1)
        else:
            dt = state.mean.new_full((1,), float(dt))
        det = usable_detections(detections)
        moved = self._compensate(state, ego_pose)
        predicted = self._predict(moved, dt)
        updated, marg = self._update(predicted, det)
        merged = self._merge(updated)
        born, replaced = self._birth(merged, det, marg)
        cleared = self._clear_empty(born)
        new_state = self._record(cleared, replaced, ego_pose)
        return self.tracks(new_state), new_state

    def tracks(self, state: TrackerState) -> Tracks:
        """The `Tracks` view of a state: H samples `steps_per_sample` steps apart, ending now."""
        return Tracks(
            state=history.sample(state.history_mean, self.sample_index),
            state_cov=history.sample(state.history_cov, self.sample_index),
            existence=state.existence,
            class_probs=state.class_probs,
            size=state.size,
            step_valid=history.sample(state.history_valid, self.sample_index),
            valid=state.existence > 0,
        )

    # -- stages ----------------------------------------------------------
    def _compensate(self, state: TrackerState, ego_pose: Tensor) -> TrackerState:
        """Move every state and the history into the current ego frame."""
        first = (state.steps == 0).unsqueeze(-1)  # (B, 1): no previous pose yet
        rot, shift = relative_motion(torch.where(first, ego_pose, state.ego_pose), ego_pose)
        mean, cov = change_frame(state.mean, state.cov, rot, shift)
        hist_mean, hist_cov = change_frame(state.history_mean, state.history_cov, rot, shift)
        return dataclasses.replace(state, mean=mean, cov=cov, history_mean=hist_mean, history_cov=hist_cov)

    def _predict(self, state: TrackerState, dt: Tensor) -> TrackerState:
        accel_density = state.class_probs @ self.accel_var.to(state.mean.dtype)  # (B, A)
        mean, cov = predict(state.mean, state.cov, dt, accel_density)
        survival = torch.exp(-dt / self.config.mean_lifetime).unsqueeze(-1)  # (B, 1)
        age = state.age + dt.unsqueeze(-1)
        return dataclasses.replace(state, mean=mean, cov=cov, existence=state.existence * survival, age=age)

    def _update(self, state: TrackerState, det: Detections) -> tuple[TrackerState, Marginals]:
        cfg = self.config
        pos_cov = state.cov[..., STATE_POS, STATE_POS]
        pairs = pair_geometry(state.mean[..., STATE_POS], pos_cov, det.position, det.position_cov)
        weights = hypothesis_weights(
            pairs.log_likelihood, state.existence, det.existence, cfg.detection_prob, cfg.clutter_density
        )
        marg = association_marginals(weights, cfg.association_iterations)
        mean, cov = pda_update(state.mean, state.cov, pairs, marg)
        updated = dataclasses.replace(
            state,
            mean=mean,
            cov=cov,
            existence=existence_update(state.existence, marg.missed, cfg.detection_prob),
            class_probs=_renormalise(average_attribute(state.class_probs, state.evidence, marg.assoc, det.class_probs)),
            size=average_attribute(state.size, state.evidence, marg.assoc, det.size),
            evidence=(state.evidence + marg.assoc.sum(-1)).clamp(max=cfg.attribute_memory),
        )
        return updated, marg

    def _merge(self, state: TrackerState) -> TrackerState:
        """Softly suppress a track that duplicates a more likely one (`perception.tracking.merge`)."""
        if self.config.merge_scale == 0:
            return state
        keep = duplicate_suppression(
            state.mean[..., STATE_POS], state.cov[..., STATE_POS, STATE_POS], state.existence, self.config.merge_scale
        )
        return dataclasses.replace(state, existence=state.existence * keep)

    def _birth(self, state: TrackerState, det: Detections, marg: Marginals) -> tuple[TrackerState, Tensor]:
        """Seed tracks from unexplained detections; returns the state and the replaced slots [B, A]."""
        plan = birth.plan_births(state.existence, det.existence, marg.unexplained)
        take = lambda values: birth.take_detections(values, plan)  # noqa: E731
        seed_mean = torch.cat((take(det.position), take(det.velocity)), -1)  # (B, k, 4)
        seed_cov = _block_diag(take(det.position_cov), take(det.velocity_cov))  # (B, k, 4, 4)
        first_count = torch.ones_like(plan.existence)  # the seeding detection itself
        born = dataclasses.replace(
            state,
            mean=birth.place(state.mean, seed_mean, plan),
            cov=birth.place(state.cov, seed_cov, plan),
            existence=birth.place(state.existence, plan.existence, plan),
            class_probs=birth.place(state.class_probs, take(det.class_probs), plan),
            size=birth.place(state.size, take(det.size), plan),
            evidence=birth.place(state.evidence, first_count, plan),
            age=birth.place(state.age, torch.zeros_like(plan.existence), plan),
        )
        return born, plan.replaced

    def _clear_empty(self, state: TrackerState) -> TrackerState:
        """Reset slots whose existence reached 0, so unsupported covariances cannot grow without bound."""
        alive = state.existence > 0  # (B, A)
        eye = torch.eye(STATE_DIM, dtype=state.cov.dtype, device=state.cov.device)
        fillers = {"mean": 0.0, "cov": eye, "class_probs": 1.0 / NUM_CLASSES, "size": 1.0, "evidence": 0.0, "age": 0.0}
        cleared = {}
        for name, filler in fillers.items():
            value = getattr(state, name)
            cleared[name] = torch.where(alive.reshape(*alive.shape, *([1] * (value.dim() - 2))), value, filler)
        return dataclasses.replace(state, **cleared)

    def _record(self, state: TrackerState, replaced: Tensor, ego_pose: Tensor) -> TrackerState:
        """Append the posterior to the history; a new track's slot forgets its predecessor's past."""
        alive = state.existence > 0  # (B, A)
        past_valid = state.history_valid & ~replaced.unsqueeze(-1)
        return dataclasses.replace(
            state,
            history_mean=history.push(state.history_mean, state.mean),
            history_cov=history.push(state.history_cov, state.cov),
            history_valid=history.push(past_valid, alive) & alive.unsqueeze(-1),
            ego_pose=ego_pose,
            steps=state.steps + 1,
        )

    def _check_inputs(self, state: TrackerState, det: Detections, ego_pose: Tensor) -> None:
        cfg, batch = self.config, state.mean.shape[0]  # a symbolic size under torch.export: no int()
        if state.num_slots != cfg.slots or state.history_valid.shape[2] != cfg.buffer_steps:
            raise ValueError(
                f"Tracker.step: state has {state.num_slots} slots and {state.history_valid.shape[2]} buffer steps, "
                f"expected TrackerConfig.slots={cfg.slots} and buffer_steps={cfg.buffer_steps}"
            )
        if det.existence.dim() != 2 or det.existence.shape[0] != batch:
            raise ValueError(
                f"Tracker.step: detections.existence must be [B={batch}, N], got {tuple(det.existence.shape)}"
            )
        if tuple(ego_pose.shape) != (batch, 3):
            raise ValueError(f"Tracker.step: ego_pose must be [B={batch}, 3], got {tuple(ego_pose.shape)}")
