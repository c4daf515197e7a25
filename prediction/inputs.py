"""Observed positions -> `Tracks`, computed from the past only.

Velocities are BACKWARD differences `(x_h - x_{h-1}) / dt`: the velocity at
step h uses steps h and h-1, never h+1. Trajectron++'s published ETH/UCY
numbers used central differences (`np.gradient`), whose velocity at the last
observed step reads the first future position; tests prove nothing here (or in
the model's features) changes when the future does.

Where the previous step is missing (the first observation of an agent) the
velocity is unknown: its mean is 0 and its standard deviation
`unknown_velocity_std`, so the model reads "unknown" from the covariance rather
than mistaking it for "standing still".
"""

from __future__ import annotations

import torch
from torch import Tensor

from perception.types import Tracks
from sim.state import AgentKind

PEDESTRIAN_SIZE = 0.5  # m, box side used for pedestrians when no size is given


def check_observations(obs_xy: Tensor, obs_valid: Tensor, history: int | None = None, min_history: int = 1) -> None:
    """Raise `ValueError` naming the argument unless `obs_xy [S, A, H, 2]` float and `obs_valid [S, A, H]` bool
    agree, H is `history` (when given) and at least `min_history`, and every observed position is finite."""
    if not isinstance(obs_xy, Tensor) or obs_xy.dim() != 4 or obs_xy.shape[-1] != 2:
        shape = tuple(obs_xy.shape) if isinstance(obs_xy, Tensor) else type(obs_xy).__name__
        raise ValueError(f"obs_xy: expected a float tensor [S, A, H, 2] (m), got {shape}")
    if not obs_xy.is_floating_point():
        raise ValueError(f"obs_xy: expected a float tensor, got {obs_xy.dtype}")
    if not isinstance(obs_valid, Tensor) or obs_valid.dtype != torch.bool:
        got = obs_valid.dtype if isinstance(obs_valid, Tensor) else type(obs_valid).__name__
        raise ValueError(f"obs_valid: expected a bool tensor [S, A, H], got {got}")
    if tuple(obs_valid.shape) != tuple(obs_xy.shape[:3]):
        raise ValueError(f"obs_valid: expected shape {tuple(obs_xy.shape[:3])} (that of obs_xy without the last "
                         f"axis), got {tuple(obs_valid.shape)}")  # fmt: skip
    if history is not None and obs_xy.shape[2] != history:
        raise ValueError(f"obs_xy: expected {history} observed steps on axis 2, got {obs_xy.shape[2]}")
    if obs_xy.shape[2] < min_history:
        raise ValueError(f"obs_xy: expected at least {min_history} observed steps on axis 2, got {obs_xy.shape[2]}")
    bad = ~torch.isfinite(obs_xy).all(dim=-1) & obs_valid
    if bool(bad.any()):
        s, a, h = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"obs_xy: non-finite position at window {s}, agent {a}, step {h} (marked valid)")


def check_lanes(lanes: Tensor, lanes_valid: Tensor, windows: int) -> None:
    """Raise `ValueError` naming the argument unless `lanes [S, N, P, 2]` float and `lanes_valid [S, N, P]`
    bool agree with S = `windows` and every valid point is finite."""
    if not isinstance(lanes, Tensor) or lanes.dim() != 4 or lanes.shape[-1] != 2 or not lanes.is_floating_point():
        got = (tuple(lanes.shape), lanes.dtype) if isinstance(lanes, Tensor) else type(lanes).__name__
        raise ValueError(f"lanes: expected a float tensor [S, N, P, 2] (m), got {got}")
    if not isinstance(lanes_valid, Tensor) or lanes_valid.dtype != torch.bool:
        got = lanes_valid.dtype if isinstance(lanes_valid, Tensor) else type(lanes_valid).__name__
        raise ValueError(f"lanes_valid: expected a bool tensor [S, N, P], got {got}")
    if lanes.shape[0] != windows:
        raise ValueError(f"lanes: expected {windows} windows on axis 0, got {tuple(lanes.shape)}")
    if tuple(lanes_valid.shape) != tuple(lanes.shape[:3]):
        raise ValueError(f"lanes_valid: expected shape {tuple(lanes.shape[:3])} (that of lanes without the last "
                         f"axis), got {tuple(lanes_valid.shape)}")  # fmt: skip
    if bool((~torch.isfinite(lanes).all(dim=-1) & lanes_valid).any()):
        raise ValueError("lanes: non-finite point marked valid")


def backward_velocity(xy: Tensor, present: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """(velocity [..., H, 2], known [..., H] bool): `(x_h - x_{h-1}) / dt` where both steps are present."""
    previous = torch.cat((xy[..., :1, :], xy[..., :-1, :]), dim=-2)
    had_previous = torch.cat((torch.zeros_like(present[..., :1]), present[..., :-1]), dim=-1)
    known = present & had_previous
    velocity = torch.where(known[..., None], (xy - previous) / dt, torch.zeros_like(xy))
    return velocity, known


def tracks_from_positions(
    obs_xy: Tensor,
    obs_valid: Tensor,
    dt: float,
    class_probs: Tensor | None = None,
    size: Tensor | None = None,
    position_std: float = 0.05,
    unknown_velocity_std: float = 2.0,
) -> Tracks:
    """`Tracks` from observed positions `obs_xy [S, A, H, 2]` and `obs_valid [S, A, H]` (past steps only).

    Agents present at the last step are the valid tracks (existence 1). Position
    covariance is `position_std^2 I` (annotation noise); a known velocity's
    covariance follows from differencing two such positions, `2 position_std^2 / dt^2 I`.
    `class_probs [S, A, 3]` defaults to pedestrian, `size [S, A, 2]` to 0.5 x 0.5 m.
    """
    check_observations(obs_xy, obs_valid)
    S, A, H, _ = obs_xy.shape
    xy = torch.where(obs_valid[..., None], obs_xy, torch.zeros_like(obs_xy))
    velocity, known = backward_velocity(xy, obs_valid, dt)
    eye = torch.eye(2, dtype=xy.dtype, device=xy.device)
    pos_var = torch.full((S, A, H), position_std**2, dtype=xy.dtype, device=xy.device)
    vel_var = torch.where(known, 2 * position_std**2 / dt**2, unknown_velocity_std**2 + 0 * pos_var)
    cov = torch.zeros(S, A, H, 4, 4, dtype=xy.dtype, device=xy.device)
    cov[..., :2, :2] = pos_var[..., None, None] * eye
    cov[..., 2:, 2:] = vel_var[..., None, None] * eye
    valid = obs_valid[..., -1]
    if class_probs is None:
        class_probs = torch.zeros(S, A, 3, dtype=xy.dtype, device=xy.device)
        class_probs[..., int(AgentKind.PEDESTRIAN)] = 1.0
    if size is None:
        size = torch.full((S, A, 2), PEDESTRIAN_SIZE, dtype=xy.dtype, device=xy.device)
    return Tracks(
        state=torch.cat((xy, velocity), dim=-1),
        state_cov=cov,
        existence=valid.to(xy.dtype),
        class_probs=class_probs.to(xy.dtype),
        size=size.to(xy.dtype),
        step_valid=obs_valid,
        valid=valid,
    )
