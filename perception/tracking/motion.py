"""Ego-motion compensation and the constant-velocity prediction of the Kalman filter.

The state is (x, y, vx, vy): position and absolute velocity of an object,
expressed in the ego frame. Objects move with constant velocity in the world,
driven by white acceleration; a change of frame only rotates and shifts the
state, so compensation (new frame) and prediction (new time) are separate steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from perception.types import STATE_DIM


def rotation(yaw: Tensor) -> Tensor:
    """[..., 2, 2] counter-clockwise rotation matrices of `yaw [...]`."""
    c, s = torch.cos(yaw), torch.sin(yaw)
    return torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)


def relative_motion(prev_pose: Tensor, curr_pose: Tensor) -> tuple[Tensor, Tensor]:
    """Map from the previous ego frame to the current one: `p_new = R p_old + t`.

    Args:
        prev_pose, curr_pose: [B, 3] world (x, y, yaw) of the ego centre.
    Returns:
        R: [B, 2, 2] rotation by (prev_yaw - curr_yaw); t: [B, 2], m.
    """
    rot = rotation(prev_pose[:, 2] - curr_pose[:, 2])  # (B, 2, 2)
    world_shift = prev_pose[:, :2] - curr_pose[:, :2]  # (B, 2), subtracted first: poses can be far from 0
    to_curr = rotation(curr_pose[:, 2]).transpose(-1, -2)  # world -> current ego axes
    shift = (to_curr @ world_shift.unsqueeze(-1)).squeeze(-1)  # (B, 2)
    return rot, shift


def state_transform(rot: Tensor) -> Tensor:
    """[B, 4, 4] block-diagonal (R, R): positions and velocities both rotate."""
    zeros = torch.zeros_like(rot)
    return torch.cat((torch.cat((rot, zeros), -1), torch.cat((zeros, rot), -1)), -2)


def apply_linear(mean: Tensor, transform: Tensor) -> Tensor:
    """`transform [B, 4, 4] @ mean` for `mean [B, ..., 4]`, as one matmul per episode."""
    flat = mean.reshape(mean.shape[0], -1, STATE_DIM)  # (B, M, 4)
    return (flat @ transform.transpose(-1, -2)).reshape(mean.shape)


def congruence(cov: Tensor, transform: Tensor) -> Tensor:
    """`T P T^T` for `cov [B, ..., 4, 4]` and `T [B, 4, 4]`, symmetric.

    Two matmuls per episode instead of one tiny matmul per matrix: with Y = P T^T,
    Y^T T^T = (T P T^T)^T, which is the result itself since it is symmetric.
    """
    batch, t_transpose = cov.shape[0], transform.transpose(-1, -2)
    right = (cov.reshape(batch, -1, STATE_DIM) @ t_transpose).reshape(cov.shape)  # P T^T
    both = (right.transpose(-1, -2).reshape(batch, -1, STATE_DIM) @ t_transpose).reshape(cov.shape)
    return symmetrise(both)


def change_frame(mean: Tensor, cov: Tensor, rot: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """Re-express states `mean [B, ..., 4]`, `cov [B, ..., 4, 4]` in the new ego frame."""
    big = state_transform(rot)  # (B, 4, 4)
    offset = torch.cat((shift, torch.zeros_like(shift)), -1)  # (B, 4)
    offset = offset.reshape(offset.shape[0], *([1] * (mean.dim() - 2)), STATE_DIM)
    return apply_linear(mean, big) + offset, congruence(cov, big)


def symmetrise(cov: Tensor) -> Tensor:
    """Average with the transpose: rounding must not leave covariances asymmetric."""
    return 0.5 * (cov + cov.transpose(-1, -2))


def transition(dt: Tensor) -> Tensor:
    """[B, 4, 4] constant-velocity transition F for steps `dt [B]`, s."""
    eye2 = torch.eye(2, dtype=dt.dtype, device=dt.device)
    zero2 = torch.zeros_like(eye2)
    # Built from blocks, not by item assignment, which copies from the host (not capturable in a CUDA graph).
    couple = torch.cat((torch.cat((zero2, eye2), -1), torch.cat((zero2, zero2), -1)), -2)  # position += dt velocity
    return torch.eye(STATE_DIM, dtype=dt.dtype, device=dt.device) + dt.reshape(-1, 1, 1) * couple


def white_acceleration_noise(dt: Tensor) -> Tensor:
    """[B, 4, 4] process noise Q of a unit-density white acceleration over `dt [B]`.

    Per axis [[dt^3/3, dt^2/2], [dt^2/2, dt]] (continuous white-noise
    acceleration model, Bar-Shalom et al., Estimation with Applications to
    Tracking and Navigation, 6.2.2); scale by the spectral density q.
    """
    t = dt.reshape(-1, 1, 1)
    eye2 = torch.eye(2, dtype=dt.dtype, device=dt.device)
    pos, cross, vel = t**3 / 3 * eye2, t**2 / 2 * eye2, t * eye2
    return torch.cat((torch.cat((pos, cross), -1), torch.cat((cross, vel), -1)), -2)


def predict(mean: Tensor, cov: Tensor, dt: Tensor, accel_density: Tensor) -> tuple[Tensor, Tensor]:
    """Kalman prediction of `mean [B, A, 4]`, `cov [B, A, 4, 4]` over `dt [B]`.

    Args:
        accel_density: [B, A] spectral density q of each track's white acceleration, m^2/s^3.
    """
    f = transition(dt)  # (B, 4, 4)
    q = white_acceleration_noise(dt).unsqueeze(1) * accel_density[..., None, None]  # (B, A, 4, 4)
    return apply_linear(mean, f), symmetrise(congruence(cov, f) + q)
