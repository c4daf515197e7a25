"""Agent dynamics: Gaussian controls integrated into Gaussian future positions.

The predictor outputs, per agent, latent mode and future step, a Gaussian over
controls; the functions here integrate them through agent-type dynamics into a
Gaussian over positions, as Trajectron++ does (Salzmann et al., ECCV 2020;
StanfordASL/Trajectron-plus-plus, `trajectron/model/dynamics/single_integrator.py`
and `unicycle.py`, `integrate_distribution`):

* pedestrians: `single_integrator`, controls are Cartesian velocities;
* vehicles and cyclists: `unicycle_state` then `unicycle`, controls are
  (yaw rate, acceleration), the mean integrated exactly over each step and the
  covariance propagated by an extended-Kalman-filter linearisation;
* `moment_match` blends the two by class probability, `cholesky_2x2` turns the
  result into the factors `Forecast` carries.

Where this differs from Trajectron++'s `Unicycle`: it switches to the zero-yaw-rate
formula below |yaw rate| 1e-2 rad/s (an O(yaw rate) error and a kink there) and
starts from a zero state covariance; here the step is written through the
moments M_n(theta) = int_0^1 s^n exp(i theta s) ds, evaluated by their Taylor
series for small theta, so it is exact and smooth at every yaw rate, and the
start state carries its own covariance.

Conventions: SI units, positions in m, angles in rad, `dt` in s. Every function
broadcasts over arbitrary leading dims `[...]` (insert singleton dims yourself,
e.g. `pos0[..., None, :]` against per-mode controls), is differentiable, and
traces to ONNX: no data-dependent Python control flow, branches are `torch.where`
with both sides kept finite, and only a Python loop over the static T steps.
Shapes are checked in Python (they are static under tracing); values are not.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from core.contracts import ContractError
from core.mat2 import Mat2

# Unicycle state and control layouts, read through names rather than bare indices.
X, Y, HEADING, SPEED = 0, 1, 2, 3
YAW_RATE, ACCEL = 0, 1

# Heading from a velocity near standstill. The linearised heading variance is
# sigma_perp^2 / speed^2 (sigma_perp: velocity std across the motion), which grows
# without bound as the speed falls below the velocity noise, where the heading is
# in fact close to uniform (variance pi^2 / 3). The Jacobian therefore divides by
# an effective speed, speed_eff^2 = speed^2 + sigma_perp^2 / HEADING_VAR_CAP + SPEED_FLOOR^2,
# which keeps the linearisation where speed >> sigma_perp and caps the heading
# variance softly at HEADING_VAR_CAP, a 90 degree std: beyond that a linearisation
# of cos/sin means nothing, and it stays below the uniform-circle value.
HEADING_VAR_CAP = (math.pi / 2) ** 2  # rad^2
SPEED_FLOOR = 0.01  # m/s; keeps speed_eff > 0 when both speed and its noise are 0
STANDSTILL_SPEED_SQ = 1e-12  # (m/s)^2; below it heading is 0 and speed 0, with zero gradient

# |yaw rate * dt| below which M_n comes from its Taylor series: the closed forms
# divide by theta up to three times (n = 2) and lose digits to cancellation there.
# With SERIES_TERMS terms the series' truncation error at theta = 1 is below 1e-15.
SERIES_LIMIT = 1.0  # rad
SERIES_TERMS = 9


def _series_coefficients(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Taylor coefficients of M_n(theta) = sum_k (i theta)^k / (k! (n + k + 1)), split by parity.

    Returns (real, imag) with Re M_n = sum_j real[j] theta^(2j) and
    Im M_n = theta * sum_j imag[j] theta^(2j).
    """
    real = tuple((-1) ** j / (math.factorial(2 * j) * (n + 2 * j + 1)) for j in range(SERIES_TERMS))
    imag = tuple((-1) ** j / (math.factorial(2 * j + 1) * (n + 2 * j + 2)) for j in range(SERIES_TERMS))
    return real, imag


_SERIES = tuple(_series_coefficients(n) for n in range(3))


# -- shape checks ---------------------------------------------------------------


def _check_tail(where: str, tensor: Tensor, tail: tuple[int | None, ...], describe: str) -> None:
    """Fail unless `tensor` ends in dims `tail` (None: any size); `describe` is the documented shape."""
    if not isinstance(tensor, Tensor):
        raise ContractError(f"{where}: expected a torch.Tensor {describe}, got {type(tensor).__name__}")
    got = tuple(tensor.shape)
    fits = len(got) >= len(tail) and all(
        want is None or want == size for want, size in zip(tail, got[-len(tail) :], strict=True)
    )
    if not fits:
        raise ContractError(f"{where}: expected shape {describe}, got {got}")
    if not tensor.is_floating_point():
        raise ContractError(f"{where}: expected a float tensor, got dtype {tensor.dtype}")


def _check_steps(where: str, tensor: Tensor, steps: int, axis: int) -> None:
    """Fail unless `tensor.shape[axis]` is the step count T given by the first per-step argument."""
    if int(tensor.shape[axis]) != steps:
        raise ContractError(f"{where}: expected T = {steps} steps on axis {axis}, got shape {tuple(tensor.shape)}")


def _check_dt(where: str, dt: float) -> None:
    if isinstance(dt, Tensor) or not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ContractError(f"{where}.dt: expected a finite Python float > 0 s, got {dt!r}")


# -- single integrator ------------------------------------------------------------


def single_integrator(
    pos0: Tensor, pos0_cov: Tensor, vel: Tensor, vel_cov: Tensor, dt: float, shared_chol: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Pedestrian positions from Gaussian velocities, x_{t+1} = x_t + dt * u_t.

    Controls are independent across steps and of the start, so the propagation
    is exact: pos_t = pos0 + dt * sum_{k<=t} vel_k and
    cov_t = pos0_cov + dt^2 * sum_{k<=t} vel_cov_k.

    With `shared_chol`, each velocity also carries a drift `S_k eta` whose noise
    eta ~ N(0, I) is the SAME at every step (a walker's persistent deviation from
    the mean path, which makes sampled paths smooth); then
    cov_t += dt^2 * (sum_{k<=t} S_k)(sum_{k<=t} S_k)^T.

    Args:
        pos0: [..., 2] start position, m.
        pos0_cov: [..., 2, 2] its covariance, m^2.
        vel: [..., T, 2] mean velocity held over each step, m/s.
        vel_cov: [..., T, 2, 2] its covariance, (m/s)^2.
        dt: step length, s.
        shared_chol: [..., T, 2, 2] the drift's factor S_k per step, m/s (None: no drift).

    Returns:
        (pos [..., T, 2] m, pos_cov [..., T, 2, 2] m^2); step t is the position after t + 1 steps.
    """
    _check_tail("single_integrator.pos0", pos0, (2,), "[..., 2]")
    _check_tail("single_integrator.pos0_cov", pos0_cov, (2, 2), "[..., 2, 2]")
    _check_tail("single_integrator.vel", vel, (None, 2), "[..., T, 2]")
    _check_tail("single_integrator.vel_cov", vel_cov, (None, 2, 2), "[..., T, 2, 2]")
    _check_steps("single_integrator.vel_cov", vel_cov, int(vel.shape[-2]), -3)
    _check_dt("single_integrator", dt)
    pos = pos0.unsqueeze(-2) + dt * vel.cumsum(dim=-2)  # [..., T, 2]
    pos_cov = pos0_cov.unsqueeze(-3) + dt**2 * vel_cov.cumsum(dim=-3)  # [..., T, 2, 2]
    if shared_chol is not None:
        _check_tail("single_integrator.shared_chol", shared_chol, (None, 2, 2), "[..., T, 2, 2]")
        drift = Mat2.of(dt * shared_chol.cumsum(dim=-3))  # [..., T] each
        pos_cov = pos_cov + drift.mm(drift.T).tensor()
    return pos, pos_cov


# -- unicycle start state ------------------------------------------------------------


def unicycle_state(
    pos: Tensor, pos_cov: Tensor, vel: Tensor, vel_cov: Tensor, heading_hint: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Unicycle state (x, y, heading, speed) from a position and a Cartesian velocity.

    heading = atan2(vy, vx), speed = |v|; (heading, speed) get the covariance
    J vel_cov J^T with J the Jacobian of the polar transform, rows
    (-sin h, cos h) / speed_eff and (cos h, sin h). speed_eff replaces the speed
    (see HEADING_VAR_CAP) so the heading variance stays below HEADING_VAR_CAP and
    everything stays finite at standstill. Position and velocity are taken as
    independent (zero cross-covariance).

    `heading_hint [..., 2]` (m/s), where given, is a direction known apart from
    the motion (the lane a vehicle stands on, `prediction.lanes.heading_hint`,
    which fades with speed): the heading is that of v + hint, so the hint decides
    the heading of a standing vehicle, and it firms the heading as motion does
    (|v + hint| in speed_eff). The speed stays |v|.

    At standstill (|v + hint|^2 < STANDSTILL_SPEED_SQ) the heading is 0 and the
    speed 0, both with zero gradient; the speed variance is then vel_cov's x-x
    entry, a Gaussian stand-in for what is really a Rayleigh-like distribution.

    Args:
        pos: [..., 2] position, m.
        pos_cov: [..., 2, 2] its covariance, m^2.
        vel: [..., 2] velocity, m/s.
        vel_cov: [..., 2, 2] its covariance, (m/s)^2.
        heading_hint: [..., 2] or None, m/s.

    Returns:
        (state [..., 4] (m, m, rad, m/s), state_cov [..., 4, 4]).
    """
    _check_tail("unicycle_state.pos", pos, (2,), "[..., 2]")
    _check_tail("unicycle_state.pos_cov", pos_cov, (2, 2), "[..., 2, 2]")
    _check_tail("unicycle_state.vel", vel, (2,), "[..., 2]")
    _check_tail("unicycle_state.vel_cov", vel_cov, (2, 2), "[..., 2, 2]")
    speed = _norm_or_zero(vel)
    pointing = vel if heading_hint is None else vel + heading_hint
    dx, dy = pointing[..., 0], pointing[..., 1]
    firm = _norm_or_zero(pointing)
    moving = firm > 0
    safe = torch.where(moving, firm, torch.ones_like(firm))
    cos_h = torch.where(moving, dx / safe, 1.0)
    sin_h = torch.where(moving, dy / safe, 0.0)
    heading = torch.atan2(torch.where(moving, dy, 0.0), torch.where(moving, dx, 1.0))

    along = torch.stack((cos_h, sin_h), dim=-1)  # [..., 2] unit vector along the heading
    across = torch.stack((-sin_h, cos_h), dim=-1)  # [..., 2] unit vector across it
    var_across = _quadratic_form(vel_cov, across, across)  # (m/s)^2
    cov_across_along = _quadratic_form(vel_cov, across, along)
    var_along = _quadratic_form(vel_cov, along, along)
    speed_eff = torch.sqrt(firm * firm + var_across / HEADING_VAR_CAP + SPEED_FLOOR**2)
    polar_cov = _sym2(var_across / speed_eff**2, cov_across_along / speed_eff, var_along)  # [..., 2, 2]

    pos, polar = torch.broadcast_tensors(pos, torch.stack((heading, speed), dim=-1))
    return torch.cat((pos, polar), dim=-1), _block_diag(pos_cov, polar_cov)


def _norm_or_zero(v: Tensor) -> Tensor:
    """|v| of `v [..., 2]`, exactly 0 with zero gradient below sqrt(STANDSTILL_SPEED_SQ)."""
    square = v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]
    moving = square > STANDSTILL_SPEED_SQ
    # Double where: the unused branch sees harmless inputs, so its gradient is finite (and then zeroed).
    return torch.where(moving, torch.sqrt(torch.where(moving, square, torch.ones_like(square))), 0.0)


def _quadratic_form(matrix: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """left^T matrix right for `matrix [..., 2, 2]`, vectors `[..., 2]` -> [...]."""
    return (left.unsqueeze(-2) @ matrix @ right.unsqueeze(-1)).squeeze(-1).squeeze(-1)


def _sym2(a: Tensor, b: Tensor, d: Tensor) -> Tensor:
    """[[a, b], [b, d]] as [..., 2, 2]."""
    return torch.stack((torch.stack((a, b), dim=-1), torch.stack((b, d), dim=-1)), dim=-2)


def _block_diag(top: Tensor, bottom: Tensor) -> Tensor:
    """[[top, 0], [0, bottom]] for 2x2 blocks `[..., 2, 2]` (broadcast) -> [..., 4, 4]."""
    top, bottom = torch.broadcast_tensors(top, bottom)
    zero = torch.zeros_like(top)
    return torch.cat((torch.cat((top, zero), dim=-1), torch.cat((zero, bottom), dim=-1)), dim=-2)


# -- unicycle step ------------------------------------------------------------------


def _arc_moments(theta: Tensor) -> list[tuple[Tensor, Tensor]]:
    """(Re, Im) of M_n(theta) = int_0^1 s^n exp(i theta s) ds for n = 0, 1, 2, each [...].

    Over one step with heading phi + theta s and speed v + a dt s (s in [0, 1]),
    the displacement in the start-heading frame is dt * int_0^1 (v + a dt s) exp(i theta s) ds
    = dt (v M_0 + a dt M_1), and dM_n/dtheta = i M_{n+1} gives its yaw-rate derivative.
    """
    small = theta.abs() < SERIES_LIMIT
    # Both branches get inputs where they are finite (double where), so neither
    # leaks NaN or inf into the values or the gradients of the other.
    near = torch.where(small, theta, torch.zeros_like(theta))
    far = torch.where(small, torch.full_like(theta, SERIES_LIMIT), theta)
    series = _series_moments(near)
    closed = _closed_moments(far)
    return [
        (torch.where(small, s_re, c_re), torch.where(small, s_im, c_im))
        for (s_re, s_im), (c_re, c_im) in zip(series, closed, strict=True)
    ]


def _series_moments(theta: Tensor) -> list[tuple[Tensor, Tensor]]:
    """M_0..M_2 by Horner evaluation of their Taylor series in theta^2 (accurate for |theta| <= 1)."""
    square = theta * theta
    moments = []
    for real, imag in _SERIES:
        re = torch.full_like(theta, real[-1])
        im = torch.full_like(theta, imag[-1])
        for c_re, c_im in zip(real[-2::-1], imag[-2::-1], strict=True):
            re = re * square + c_re
            im = im * square + c_im
        moments.append((re, theta * im))
    return moments


def _closed_moments(theta: Tensor) -> list[tuple[Tensor, Tensor]]:
    """M_0..M_2 in closed form; theta must stay away from 0.

    M_0 = (exp(i theta) - 1) / (i theta); integrating by parts,
    M_n = (exp(i theta) - n M_{n-1}) / (i theta), and dividing p + i q by i theta
    gives q / theta - i p / theta.
    """
    cos_t, sin_t = torch.cos(theta), torch.sin(theta)
    moments = [(sin_t / theta, (1.0 - cos_t) / theta)]
    for n in (1, 2):
        prev_re, prev_im = moments[-1]
        p, q = cos_t - n * prev_re, sin_t - n * prev_im
        moments.append((q / theta, -p / theta))
    return moments


def _rotate(cos_h: Tensor, sin_h: Tensor, re: Tensor, im: Tensor) -> tuple[Tensor, Tensor]:
    """The vector (re, im) in the heading frame, rotated into the window frame."""
    return cos_h * re - sin_h * im, sin_h * re + cos_h * im


def _stack_matrix(rows: list[list[Tensor]]) -> Tensor:
    """Nested lists of equally shaped [...] tensors -> [..., rows, cols]."""
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def _unicycle_step(state: Tensor, control: Tensor, dt: float) -> tuple[Tensor, Tensor, Tensor]:
    """One exact unicycle step with its Jacobians at (state, control).

    With theta = yaw_rate * dt and D = dt (v M_0(theta) + a dt M_1(theta)) the
    displacement in the start-heading frame (see `_arc_moments`):
    position += R(heading) D, heading += theta, speed += a dt. Derivatives:
    d position / d heading = R(heading + 90 deg) D, d position / d speed = dt R M_0,
    d position / d a = dt^2 R M_1 and d position / d yaw_rate = dt R (i E) with
    E = dt (v M_1 + a dt M_2), from dM_n/dtheta = i M_{n+1}.

    Args:
        state: [..., 4] (x m, y m, heading rad, speed m/s).
        control: [..., 2] (yaw rate rad/s, acceleration m/s^2), held over the step.
        dt: s.

    Returns:
        next_state [..., 4], F = d next / d state [..., 4, 4], G = d next / d control [..., 4, 2].
    """
    heading, speed = state[..., HEADING], state[..., SPEED]
    yaw_rate, accel = control[..., YAW_RATE], control[..., ACCEL]
    (m0_re, m0_im), (m1_re, m1_im), (m2_re, m2_im) = _arc_moments(yaw_rate * dt)
    cos_h, sin_h = torch.cos(heading), torch.sin(heading)

    d_re = dt * (speed * m0_re + accel * dt * m1_re)  # [...] displacement, heading frame, m
    d_im = dt * (speed * m0_im + accel * dt * m1_im)
    e_re = dt * (speed * m1_re + accel * dt * m2_re)  # [...] dD/dtheta = i E
    e_im = dt * (speed * m1_im + accel * dt * m2_im)
    dx, dy = _rotate(cos_h, sin_h, d_re, d_im)
    next_state = torch.stack(
        (state[..., X] + dx, state[..., Y] + dy, heading + yaw_rate * dt, speed + accel * dt), dim=-1
    )

    dx_dv, dy_dv = _rotate(cos_h, sin_h, dt * m0_re, dt * m0_im)
    dx_dw, dy_dw = _rotate(cos_h, sin_h, -dt * e_im, dt * e_re)  # dt * i E, rotated
    dx_da, dy_da = _rotate(cos_h, sin_h, dt * dt * m1_re, dt * dt * m1_im)
    one, zero = torch.ones_like(dx), torch.zeros_like(dx)
    step = torch.full_like(dx, dt)
    state_jacobian = _stack_matrix(
        [
            [one, zero, -dy, dx_dv],
            [zero, one, dx, dy_dv],
            [zero, zero, one, zero],
            [zero, zero, zero, one],
        ]
    )
    control_jacobian = _stack_matrix([[dx_dw, dx_da], [dy_dw, dy_da], [step, zero], [zero, step]])
    return next_state, state_jacobian, control_jacobian


def unicycle_transition(state: Tensor, control: Tensor, dt: float) -> Tensor:
    """The unicycle state after one step of constant yaw rate and acceleration, integrated exactly.

    Args:
        state: [..., 4] (x m, y m, heading rad, speed m/s).
        control: [..., 2] (yaw rate rad/s, acceleration m/s^2).
        dt: s.

    Returns:
        [..., 4] the next state. The speed is not clamped at 0: a braking
        unicycle reverses, as in Trajectron++.
    """
    _check_tail("unicycle_transition.state", state, (4,), "[..., 4]")
    _check_tail("unicycle_transition.control", control, (2,), "[..., 2]")
    _check_dt("unicycle_transition", dt)
    return _unicycle_step(state, control, dt)[0]


def unicycle_path(state0: Tensor, control: Tensor, dt: float) -> Tensor:
    """Positions [..., T, 2] of a unicycle from `state0 [..., 4]` under controls `control [..., T, 2]`
    (no covariance: for sampled controls, where each sample is one deterministic path)."""
    _check_tail("unicycle_path.state0", state0, (4,), "[..., 4]")
    _check_tail("unicycle_path.control", control, (None, 2), "[..., T, 2]")
    _check_dt("unicycle_path", dt)
    moved, _, _ = _unicycle_step(_step_starts(state0, control, dt), control, dt)
    return state0[..., None, :2] + moved[..., :2].cumsum(dim=-2)


def _step_starts(state0: Tensor, control: Tensor, dt: float) -> Tensor:
    """[..., T, 4] the state at the start of every step, with the position zeroed.

    Heading and speed are linear in the controls (running sums of yaw rate and acceleration
    times dt), and neither a step's displacement nor its Jacobians depend on where it starts,
    so all T steps are evaluated at once and the positions are a running sum of displacements:
    a few dozen ops for the whole horizon instead of a loop unrolled T times in an exported graph.
    """
    turned = (control[..., YAW_RATE] * dt).cumsum(dim=-1)
    sped = (control[..., ACCEL] * dt).cumsum(dim=-1)
    before = lambda total: torch.cat((torch.zeros_like(total[..., :1]), total[..., :-1]), dim=-1)  # noqa: E731
    heading = state0[..., HEADING, None] + before(turned)
    speed = state0[..., SPEED, None] + before(sped)
    zero = torch.zeros_like(heading)
    return torch.stack((zero, zero, heading, speed), dim=-1)


def unicycle_jacobians(state: Tensor, control: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """Analytic Jacobians of `unicycle_transition`: (F [..., 4, 4] d/d state, G [..., 4, 2] d/d control)."""
    _check_tail("unicycle_jacobians.state", state, (4,), "[..., 4]")
    _check_tail("unicycle_jacobians.control", control, (2,), "[..., 2]")
    _check_dt("unicycle_jacobians", dt)
    _, state_jacobian, control_jacobian = _unicycle_step(state, control, dt)
    return state_jacobian, control_jacobian


def unicycle(
    state0: Tensor, state0_cov: Tensor, control: Tensor, control_cov: Tensor, dt: float
) -> tuple[Tensor, Tensor]:
    """Vehicle and cyclist positions from Gaussian (yaw rate, acceleration) controls.

    The mean follows `unicycle_transition` step by step; the covariance is the
    extended Kalman filter prediction P' = F P F^T + G Q G^T with F, G the
    Jacobians at the mean, controls independent across steps and of the start.

    Args:
        state0: [..., 4] start state (x m, y m, heading rad, speed m/s), e.g. from `unicycle_state`.
        state0_cov: [..., 4, 4] its covariance.
        control: [..., T, 2] mean (yaw rate rad/s, acceleration m/s^2) held over each step.
        control_cov: [..., T, 2, 2] its covariance.
        dt: step length, s.

    Returns:
        (pos [..., T, 2] m, pos_cov [..., T, 2, 2] m^2); step t is the position after t + 1 steps.
    """
    _check_tail("unicycle.state0", state0, (4,), "[..., 4]")
    _check_tail("unicycle.state0_cov", state0_cov, (4, 4), "[..., 4, 4]")
    _check_tail("unicycle.control", control, (None, 2), "[..., T, 2]")
    _check_tail("unicycle.control_cov", control_cov, (None, 2, 2), "[..., T, 2, 2]")
    _check_steps("unicycle.control_cov", control_cov, int(control.shape[-2]), -3)
    _check_dt("unicycle", dt)
    moved, state_jacobian, control_jacobian = _unicycle_step(_step_starts(state0, control, dt), control, dt)
    positions = state0[..., None, :2] + moved[..., :2].cumsum(dim=-2)
    return positions, _position_covariance(state0_cov, state_jacobian, control_jacobian, control_cov)


def _position_covariance(state0_cov: Tensor, state_jacobian: Tensor, control_jacobian: Tensor, control_cov: Tensor):
    """[..., T, 2, 2] position blocks of the EKF recursion P_{t+1} = F_t P_t F_t^T + G_t Q_t G_t^T, in closed form.

    Every F_t is I + N_t with N_t nonzero only in the block J_t = d position / d (heading, speed), so
    N_a N_b = 0 and F_t ... F_k = I + J_k + ... + J_t: with V_t = J_0 + ... + J_t, the transition from
    after step k to after step t has the block W = V_t - V_k. The position block of
    P after step t is then

        P0_pp + V_t P0_qp + (.)^T + V_t P0_qq V_t^T
        + sum_{k <= t} [C_pp + W C_qp + (.)^T + W C_qq W^T]_k,     C = G Q G^T (p: position, q: heading, speed),

    and expanding W = V_t - V_k turns each sum over k into running sums (cumsum) of products of
    V_k and C_k: no loop over steps. Equal to the step-by-step recursion (tests/prediction).
    """
    pos, rest = slice(0, 2), slice(2, 4)
    jac = Mat2.of(state_jacobian[..., pos, rest])  # [..., T] each
    g_pos, g_rest = Mat2.of(control_jacobian[..., pos, :]), Mat2.of(control_jacobian[..., rest, :])
    q = Mat2.of(control_cov)
    c_pp, c_qp, c_qq = g_pos.mm(q).mm(g_pos.T), g_rest.mm(q).mm(g_pos.T), g_rest.mm(q).mm(g_rest.T)
    v = jac.cumsum(-1)  # the steps are the last axis of each entry
    cross = v.mm(c_qp.cumsum(-1)) - v.mm(c_qp).cumsum(-1)  # sum_k W C_qp
    quad_mixed = v.mm(c_qq.mm(v.T).cumsum(-1))  # V_t sum_k C_qq V_k^T
    quad = v.mm(c_qq.cumsum(-1)).mm(v.T) - quad_mixed - quad_mixed.T + v.mm(c_qq).mm(v.T).cumsum(-1)  # sum W C_qq W^T
    process = c_pp.cumsum(-1) + cross + cross.T + quad  # sum_k [C_pp + W C_qp + (.)^T + W C_qq W^T]
    p0 = state0_cov.unsqueeze(-3)  # [..., 1, 4, 4]: broadcasts over the steps
    start_cross = v.mm(Mat2.of(p0[..., rest, pos]))
    start = Mat2.of(p0[..., pos, pos]) + start_cross + start_cross.T + v.mm(Mat2.of(p0[..., rest, rest])).mm(v.T)
    cov = (start + process).tensor()
    return 0.5 * (cov + cov.transpose(-1, -2))  # rounding must not leave the blocks asymmetric


# -- mixtures and factors --------------------------------------------------------------


def moment_match(weights: Tensor, means: Tensor, covs: Tensor) -> tuple[Tensor, Tensor]:
    """The Gaussian with the mean and covariance of a C-component mixture, per step.

    mean = sum_c w_c mu_c, cov = sum_c w_c (Sigma_c + (mu_c - mean)(mu_c - mean)^T)
    (the centred form: no cancellation, and PSD whenever the Sigma_c are).
    A component with weight exactly 0 is absent: masked with torch.where, so
    even an infinite mean or covariance there leaves values and gradients finite.

    Args:
        weights: [..., C] mixture weights >= 0 summing to 1 over C (not checked: traceable).
        means: [..., C, T, 2] component means, m.
        covs: [..., C, T, 2, 2] component covariances, m^2.

    Returns:
        (mean [..., T, 2] m, cov [..., T, 2, 2] m^2).
    """
    _check_tail("moment_match.weights", weights, (None,), "[..., C]")
    _check_tail("moment_match.means", means, (None, None, 2), "[..., C, T, 2]")
    _check_tail("moment_match.covs", covs, (None, None, 2, 2), "[..., C, T, 2, 2]")
    components = int(weights.shape[-1])
    _check_steps("moment_match.means", means, components, -3)
    _check_steps("moment_match.covs", covs, components, -4)
    _check_steps("moment_match.covs", covs, int(means.shape[-2]), -3)
    present = (weights > 0)[..., None, None]  # [..., C, 1, 1]
    w = weights[..., None, None]  # [..., C, 1, 1]
    safe_means = torch.where(present, means, torch.zeros_like(means))  # [..., C, T, 2]
    mean = (w * safe_means).sum(dim=-3)  # [..., T, 2]
    offset = safe_means - mean.unsqueeze(-3)  # [..., C, T, 2]
    spread = covs + Mat2.outer(offset[..., 0], offset[..., 1]).tensor()  # [..., C, T, 2, 2]
    spread = torch.where(present.unsqueeze(-1), spread, torch.zeros_like(spread))
    cov = (w.unsqueeze(-1) * spread).sum(dim=-4)  # [..., T, 2, 2]
    return mean, cov


def cholesky_2x2(cov: Tensor, jitter: float = 1e-6) -> Tensor:
    """Closed-form lower Cholesky factor L of (cov + cov^T) / 2 + jitter * I.

    For a PSD input every pivot of the jittered matrix is >= jitter, so clamping
    the pivots at `jitter` changes nothing there; it only guards rounding and
    non-PSD input, and keeps the diagonal > 0 (as `Forecast.validate` requires)
    with finite gradients even for a singular or zero input.

    Args:
        cov: [..., 2, 2] covariance, m^2.
        jitter: > 0, added to the diagonal, m^2.

    Returns:
        L [..., 2, 2] lower-triangular (upper entry exactly 0), diagonal >= sqrt(jitter), m.
    """
    _check_tail("cholesky_2x2.cov", cov, (2, 2), "[..., 2, 2]")
    if isinstance(jitter, Tensor) or not (isinstance(jitter, (int, float)) and math.isfinite(jitter) and jitter > 0):
        raise ContractError(f"cholesky_2x2.jitter: expected a finite Python float > 0 m^2, got {jitter!r}")
    a = cov[..., 0, 0] + jitter
    b = 0.5 * (cov[..., 0, 1] + cov[..., 1, 0])
    d = cov[..., 1, 1] + jitter
    l00 = torch.sqrt(a.clamp_min(jitter))
    l10 = b / l00
    l11 = torch.sqrt((d - l10 * l10).clamp_min(jitter))
    return _stack_matrix([[l00, torch.zeros_like(l00)], [l10, l11]])
