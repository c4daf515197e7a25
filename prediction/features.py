"""Network inputs from `Tracks`: per-agent history features and pairwise (edge) features.

Everything is agent-centric (positions relative to the agent's current
position), so the model is translation invariant; rotation invariance is
learned from rotation augmentation. The model reads the uncertainty of its
inputs: the log standard deviations of every position and velocity, the
existence probability and the class probabilities are features, not only the
means. Accelerations are backward differences of the tracked velocities, so
every feature at history step h depends on steps <= h only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from perception.types import STATE_POS, STATE_VEL, Tracks
from prediction.config import PredictorConfig

NODE_STEP_FEATURES = 11  # rel pos 2, velocity 2, acceleration 2, log std 4, observed 1
NODE_STATIC_FEATURES = 6  # class probs 3, existence 1, log size 2
EDGE_STEP_FEATURES = 5  # rel pos 2, rel velocity 2, both observed 1
_LOG_STD_RANGE = (-7.0, 3.0)


def _log_std(cov: Tensor) -> Tensor:
    """[..., 4] log standard deviations of x, y, vx, vy from `cov [..., 4, 4]`."""
    var = torch.diagonal(cov, dim1=-2, dim2=-1).clamp_min(1e-12)
    return (0.5 * var.log()).clamp(*_LOG_STD_RANGE)


def node_features(tracks: Tracks, cfg: PredictorConfig) -> tuple[Tensor, Tensor]:
    """(steps [B, A, H, 11], static [B, A, 6]); unobserved steps are all zero."""
    observed = tracks.observed  # [B, A, H]
    pos, vel = tracks.state[..., STATE_POS], tracks.state[..., STATE_VEL]
    now = pos[:, :, -1:, :]
    rel = (pos - now) / cfg.position_scale
    prev_vel = torch.cat((vel[:, :, :1], vel[:, :, :-1]), dim=2)
    prev_seen = torch.cat((torch.zeros_like(observed[..., :1]), observed[..., :-1]), dim=-1)
    acc = torch.where((observed & prev_seen)[..., None], (vel - prev_vel) / cfg.dt, torch.zeros_like(vel))
    log_std = _log_std(tracks.state_cov) / abs(_LOG_STD_RANGE[0])
    steps = torch.cat(
        (rel, vel / cfg.velocity_scale, acc / cfg.velocity_scale, log_std, torch.ones_like(rel[..., :1])), dim=-1
    )
    steps = torch.where(observed[..., None], steps, torch.zeros_like(steps))
    static = torch.cat((tracks.class_probs, tracks.existence[..., None], tracks.size.clamp_min(1e-3).log()), dim=-1)
    return steps, static


def edge_features(tracks: Tracks, cfg: PredictorConfig) -> tuple[Tensor, Tensor, Tensor]:
    """(edges [B, A, A, H * 5], distance [B, A, A] m, neighbour [B, A, A] bool).

    Row i, column j describes neighbour j seen from agent i over the history.
    `neighbour` is j valid, j != i, and within `interaction_radius` of i now.
    """
    observed = tracks.observed
    pos, vel = tracks.state[..., STATE_POS], tracks.state[..., STATE_VEL]
    rel_pos = (pos[:, None, :, :, :] - pos[:, :, None, :, :]) / cfg.position_scale  # [B, i, j, H, 2]
    rel_vel = (vel[:, None, :, :, :] - vel[:, :, None, :, :]) / cfg.velocity_scale
    both = (observed[:, None, :, :] & observed[:, :, None, :])[..., None]  # [B, i, j, H, 1]
    step = torch.cat((rel_pos, rel_vel, torch.ones_like(rel_pos[..., :1])), dim=-1)
    step = torch.where(both, step, torch.zeros_like(step))
    B, A, _, H, F = step.shape
    now = pos[:, :, -1, :]
    diff = now[:, None, :, :] - now[:, :, None, :]
    distance = (diff.square().sum(-1) + 1e-12).sqrt()
    valid = tracks.valid
    slot = torch.arange(A, device=valid.device)
    not_self = slot[:, None] != slot[None, :]  # (not a bool torch.eye: onnxruntime has no bool EyeLike)
    neighbour = valid[:, None, :] & valid[:, :, None] & not_self & (distance <= cfg.interaction_radius)
    return step.reshape(B, A, A, H * F), distance, neighbour
