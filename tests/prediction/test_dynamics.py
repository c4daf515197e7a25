"""Agent dynamics: analytic trajectories, Jacobians vs autograd, covariances vs Monte Carlo, ONNX export."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from torch import Tensor, nn

from core.contracts import ContractError
from prediction.dynamics import (
    HEADING_VAR_CAP,
    SERIES_LIMIT,
    SPEED_FLOOR,
    cholesky_2x2,
    moment_match,
    single_integrator,
    unicycle,
    unicycle_jacobians,
    unicycle_path,
    unicycle_state,
    unicycle_transition,
)
from prediction.windows import HORIZON, SAMPLE_DT

DT = SAMPLE_DT
F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_spd(g: torch.Generator, shape: tuple[int, ...], dim: int, scale: float) -> Tensor:
    """[*shape, dim, dim] float64 symmetric positive-definite matrices of size about scale^2."""
    a = torch.randn(*shape, dim, dim, generator=g, dtype=F64) * scale
    return a @ a.transpose(-1, -2) / dim + 0.1 * scale**2 * torch.eye(dim, dtype=F64)


def gaussian_samples(g: torch.Generator, mean: Tensor, cov: Tensor, n: int) -> Tensor:
    """[n, *mean.shape] samples of N(mean, cov); cov [..., d, d] broadcasts with mean [..., d]."""
    chol = torch.linalg.cholesky(cov)
    noise = torch.randn(n, *mean.shape, generator=g, dtype=mean.dtype)
    return mean + (chol @ noise.unsqueeze(-1)).squeeze(-1)


def sample_cov(x: Tensor) -> Tensor:
    """Sample covariance over the first axis of x [n, ..., d] -> [..., d, d]."""
    centred = x - x.mean(dim=0)
    return torch.einsum("n...i,n...j->...ij", centred, centred) / (x.shape[0] - 1)


def rel_err(got: Tensor, want: Tensor) -> Tensor:
    """Frobenius relative error per trailing 2x2 matrix."""
    return torch.linalg.matrix_norm(got - want) / torch.linalg.matrix_norm(want)


def straight_controls(steps: int, yaw_rate: float, accel: float) -> tuple[Tensor, Tensor]:
    control = torch.tensor([yaw_rate, accel], dtype=F64).expand(steps, 2)
    return control, torch.zeros(steps, 2, 2, dtype=F64)


def times(steps: int) -> Tensor:
    """[T] time after each step, s."""
    return DT * torch.arange(1, steps + 1, dtype=F64)


# -- single integrator ------------------------------------------------------------


def test_single_integrator_constant_velocity_is_a_line_with_summed_covariance():
    g = gen(1)
    pos0 = torch.tensor([[1.0, -2.0], [0.0, 3.0]], dtype=F64)  # [A=2, 2]
    pos0_cov = random_spd(g, (2,), 2, 0.3)
    vel = torch.tensor([[1.5, 0.5], [-1.0, 0.2]], dtype=F64)[:, None, :].expand(2, HORIZON, 2)
    vel_cov = random_spd(g, (2, HORIZON), 2, 0.2)  # a different covariance every step
    pos, pos_cov = single_integrator(pos0, pos0_cov, vel, vel_cov, DT)
    assert pos.shape == (2, HORIZON, 2) and pos_cov.shape == (2, HORIZON, 2, 2)
    t = times(HORIZON)[:, None]
    torch.testing.assert_close(pos, pos0[:, None] + t * vel[:, :1], rtol=1e-12, atol=1e-12)
    running = pos0_cov.clone()
    for step in range(HORIZON):
        running = running + DT**2 * vel_cov[:, step]
        torch.testing.assert_close(pos_cov[:, step], running, rtol=1e-12, atol=1e-14)


def test_single_integrator_broadcasts_a_shared_start_over_modes():
    g = gen(2)
    pos0, pos0_cov = torch.randn(3, 1, 2, generator=g, dtype=F64), random_spd(g, (3, 1), 2, 0.1)
    vel, vel_cov = torch.randn(3, 4, HORIZON, 2, generator=g, dtype=F64), random_spd(g, (3, 4, HORIZON), 2, 0.1)
    pos, pos_cov = single_integrator(pos0, pos0_cov, vel, vel_cov, DT)
    assert pos.shape == (3, 4, HORIZON, 2) and pos_cov.shape == (3, 4, HORIZON, 2, 2)
    one_pos, one_cov = single_integrator(pos0[1, 0], pos0_cov[1, 0], vel[1, 2], vel_cov[1, 2], DT)
    torch.testing.assert_close(pos[1, 2], one_pos)
    torch.testing.assert_close(pos_cov[1, 2], one_cov)


# -- unicycle means -------------------------------------------------------------------


def test_unicycle_without_yaw_rate_or_acceleration_drives_straight_at_constant_speed():
    heading, speed = 0.7, 6.0
    state0 = torch.tensor([2.0, -1.0, heading, speed], dtype=F64)
    control, control_cov = straight_controls(HORIZON, 0.0, 0.0)
    pos, _ = unicycle(state0, torch.zeros(4, 4, dtype=F64), control, control_cov, DT)
    direction = torch.tensor([math.cos(heading), math.sin(heading)], dtype=F64)
    want = state0[:2] + speed * times(HORIZON)[:, None] * direction
    torch.testing.assert_close(pos, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("yaw_rate", [0.3, -0.3, 4.0, -4.0, SERIES_LIMIT / DT])  # series, closed form, the limit
def test_unicycle_constant_yaw_rate_and_speed_traces_the_circle(yaw_rate: float):
    speed, heading = 5.0, 0.4
    state0 = torch.tensor([1.0, 2.0, heading, speed], dtype=F64)
    control, control_cov = straight_controls(HORIZON, yaw_rate, 0.0)
    pos, _ = unicycle(state0, torch.zeros(4, 4, dtype=F64), control, control_cov, DT)
    # Circle of radius v / w: p(t) = p0 + (v / w) (sin(h + w t) - sin h, cos h - cos(h + w t)).
    h_t = heading + yaw_rate * times(HORIZON)
    radius = speed / yaw_rate
    want = state0[:2] + radius * torch.stack(
        (torch.sin(h_t) - math.sin(heading), math.cos(heading) - torch.cos(h_t)), dim=-1
    )
    torch.testing.assert_close(pos, want, rtol=1e-12, atol=1e-11)


def test_unicycle_constant_acceleration_follows_v_t_plus_half_a_t_squared():
    heading, speed, accel = -1.1, 2.0, 1.5
    state0 = torch.tensor([0.5, 0.5, heading, speed], dtype=F64)
    control, control_cov = straight_controls(HORIZON, 0.0, accel)
    pos, _ = unicycle(state0, torch.zeros(4, 4, dtype=F64), control, control_cov, DT)
    t = times(HORIZON)[:, None]
    direction = torch.tensor([math.cos(heading), math.sin(heading)], dtype=F64)
    want = state0[:2] + (speed * t + accel * t**2 / 2) * direction
    torch.testing.assert_close(pos, want, rtol=1e-12, atol=1e-12)


def quadrature_step(state: Tensor, control: Tensor, dt: float, nodes: int = 2001) -> Tensor:
    """One step of x' = v cos h, y' = v sin h, h' = w, v' = a by Simpson's rule on [0, dt] (float64)."""
    tau = torch.linspace(0.0, dt, nodes, dtype=F64)
    heading = state[2] + control[0] * tau
    speed = state[3] + control[1] * tau
    simpson = torch.ones(nodes, dtype=F64)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    weights = simpson * dt / (3 * (nodes - 1))
    dx = (weights * speed * torch.cos(heading)).sum()
    dy = (weights * speed * torch.sin(heading)).sum()
    return torch.stack((state[0] + dx, state[1] + dy, heading[-1], speed[-1]))


@pytest.mark.parametrize("yaw_rate", [0.0, 1e-7, -0.05, 0.9 * SERIES_LIMIT / DT, 1.1 * SERIES_LIMIT / DT, -7.0])
def test_unicycle_transition_matches_quadrature_of_the_ode(yaw_rate: float):
    state = torch.tensor([3.0, -4.0, 2.5, 7.0], dtype=F64)
    for accel in (-3.0, 0.0, 2.0):
        control = torch.tensor([yaw_rate, accel], dtype=F64)
        got = unicycle_transition(state, control, DT)
        torch.testing.assert_close(got, quadrature_step(state, control, DT), rtol=0, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_unicycle_transition_is_continuous_across_the_series_limit(dtype: torch.dtype):
    state = torch.tensor([0.0, 0.0, 0.3, 9.0], dtype=dtype)
    limit = SERIES_LIMIT / DT
    # A few ulps either side: anything the step itself changes over that gap is far below tol.
    gap, tol = (4e-7, 1e-5) if dtype == torch.float32 else (1e-13, 1e-10)
    below = torch.tensor([limit * (1 - gap), 2.0], dtype=dtype)
    above = torch.tensor([limit * (1 + gap), 2.0], dtype=dtype)
    (f_below, g_below), (f_above, g_above) = unicycle_jacobians(state, below, DT), unicycle_jacobians(state, above, DT)
    # The step itself moves by G (above - below); a jump between the branches would add to that.
    change = unicycle_transition(state, above, DT) - unicycle_transition(state, below, DT)
    assert float((change - g_below @ (above - below)).abs().max()) < tol
    assert float((f_above - f_below).abs().max()) < tol
    assert float((g_above - g_below).abs().max()) < tol


def test_unicycle_float32_matches_float64_on_both_branches():
    g = gen(3)
    n = 256
    state = torch.cat((torch.randn(n, 2, generator=g), torch.rand(n, 2, generator=g) * torch.tensor([6.3, 15.0])), -1)
    yaw_rate = (torch.rand(n, generator=g) - 0.5) * 4 * SERIES_LIMIT / DT  # half below the limit, half above
    control = torch.stack((yaw_rate, torch.randn(n, generator=g) * 2), dim=-1)
    got = unicycle_transition(state.float(), control.float(), DT).double()
    want = unicycle_transition(state.double(), control.double(), DT)
    assert float((got - want).abs().max()) < 1e-5 * 20  # float32 rounding of values up to ~20 m


# -- unicycle Jacobians and covariances -------------------------------------------------


@pytest.mark.parametrize("yaw_rate", [0.0, 1e-4, -0.8, SERIES_LIMIT / DT, 6.0])
def test_unicycle_jacobians_match_autograd(yaw_rate: float):
    state = torch.tensor([1.0, -2.0, -0.6, 4.0], dtype=F64)
    control = torch.tensor([yaw_rate, -1.3], dtype=F64)
    state_jacobian, control_jacobian = unicycle_jacobians(state, control, DT)
    want_f = torch.autograd.functional.jacobian(lambda s: unicycle_transition(s, control, DT), state)
    want_g = torch.autograd.functional.jacobian(lambda u: unicycle_transition(state, u, DT), control)
    torch.testing.assert_close(state_jacobian, want_f, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(control_jacobian, want_g, rtol=1e-10, atol=1e-12)


def test_unicycle_jacobians_broadcast_state_against_per_mode_controls():
    g = gen(4)
    state = torch.randn(3, 1, 4, generator=g, dtype=F64)
    control = torch.randn(3, 5, 2, generator=g, dtype=F64)
    state_jacobian, control_jacobian = unicycle_jacobians(state, control, DT)
    assert state_jacobian.shape == (3, 5, 4, 4) and control_jacobian.shape == (3, 5, 4, 2)
    one_f, one_g = unicycle_jacobians(state[2, 0], control[2, 4], DT)
    torch.testing.assert_close(state_jacobian[2, 4], one_f)
    torch.testing.assert_close(control_jacobian[2, 4], one_g)


def test_unicycle_covariance_matches_monte_carlo():
    g = gen(5)
    n = 200_000
    state0 = torch.tensor([0.0, 0.0, 0.2, 8.0], dtype=F64)
    state0_cov = torch.diag(torch.tensor([0.05, 0.05, 0.02, 0.1], dtype=F64) ** 2)
    state0_cov[2, 3] = state0_cov[3, 2] = 0.5 * 0.02 * 0.1  # correlated heading and speed
    steps = torch.arange(HORIZON, dtype=F64)
    control = torch.stack((0.3 - 0.04 * steps, 0.5 - 0.1 * steps), dim=-1)  # [T, 2] a turning, braking car
    control_cov = torch.tensor([[0.03**2, 0.3 * 0.03 * 0.2], [0.3 * 0.03 * 0.2, 0.2**2]], dtype=F64).expand(
        HORIZON, 2, 2
    )
    pos, pos_cov = unicycle(state0, state0_cov, control, control_cov, DT)

    state = gaussian_samples(g, state0, state0_cov, n)  # [n, 4]
    controls = gaussian_samples(g, control, control_cov, n)  # [n, T, 2]
    samples = []
    for t in range(HORIZON):
        state = unicycle_transition(state, controls[:, t], DT)
        samples.append(state[:, :2])
    samples = torch.stack(samples, dim=1)  # [n, T, 2]
    # Linearisation error is second order in the (small) heading noise; MC error about sqrt(2 / n) = 0.3 %.
    assert float(rel_err(pos_cov, sample_cov(samples)).max()) < 0.03
    spread = torch.sqrt(torch.diagonal(pos_cov, dim1=-2, dim2=-1))
    assert float(((samples.mean(0) - pos) / spread).abs().max()) < 0.05


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_unicycle_closed_form_equals_the_step_by_step_ekf_recursion(dtype: torch.dtype):
    """`unicycle` evaluates all steps at once; it must equal P' = F P F^T + G Q G^T applied step by step
    with the Jacobians at the mean, for a batch of random turning, braking and accelerating agents."""
    g = gen(11)
    shape = (5, 3)
    state0 = torch.cat((torch.randn(*shape, 2, generator=g, dtype=F64) * 10,
                        torch.rand(*shape, 1, generator=g, dtype=F64) * 6 - 3,
                        torch.rand(*shape, 1, generator=g, dtype=F64) * 30), dim=-1)  # fmt: skip
    state0_cov = random_spd(g, shape, 4, 0.3)
    control = torch.randn(*shape, HORIZON, 2, generator=g, dtype=F64) * torch.tensor([0.4, 2.0], dtype=F64)
    control_cov = random_spd(g, (*shape, HORIZON), 2, 0.3)
    state, cov, positions, covariances = state0, state0_cov, [], []
    for t in range(HORIZON):
        jac_state, jac_control = unicycle_jacobians(state, control[..., t, :], DT)
        cov = jac_state @ cov @ jac_state.transpose(-1, -2) + jac_control @ control_cov[..., t, :, :] @ (
            jac_control.transpose(-1, -2)
        )
        state = unicycle_transition(state, control[..., t, :], DT)
        positions.append(state[..., :2])
        covariances.append(cov[..., :2, :2])
    pos, pos_cov = unicycle(*(x.to(dtype) for x in (state0, state0_cov, control, control_cov)), DT)
    tol = 1e-10 if dtype == F64 else 2e-5
    assert float(rel_err(pos.double(), torch.stack(positions, dim=-2)).max()) < tol
    assert float(rel_err(pos_cov.double(), torch.stack(covariances, dim=-3)).max()) < tol


def test_unicycle_is_deterministic_without_noise_and_keeps_a_symmetric_psd_covariance():
    g = gen(6)
    state0 = torch.tensor([0.0, 0.0, 1.0, 3.0], dtype=F64)
    control = torch.randn(HORIZON, 2, generator=g, dtype=F64)
    _, quiet = unicycle(state0, torch.zeros(4, 4, dtype=F64), control, torch.zeros(HORIZON, 2, 2, dtype=F64), DT)
    assert torch.equal(quiet, torch.zeros_like(quiet))
    state0_cov = random_spd(g, (), 4, 0.2)
    _, noisy = unicycle(state0, state0_cov, control, random_spd(g, (HORIZON,), 2, 0.3), DT)
    assert torch.equal(noisy, noisy.transpose(-1, -2))
    assert float(torch.linalg.eigvalsh(noisy).min()) > 0
    # Control noise only adds G Q G^T >= 0 each step, so it can only widen the forecast (Loewner order).
    _, no_control_noise = unicycle(state0, state0_cov, control, torch.zeros(HORIZON, 2, 2, dtype=F64), DT)
    assert float(torch.linalg.eigvalsh(noisy - no_control_noise).min()) > 0


# -- unicycle start state ----------------------------------------------------------------


def polar(vel: Tensor) -> Tensor:
    return torch.stack((torch.atan2(vel[..., 1], vel[..., 0]), torch.linalg.vector_norm(vel, dim=-1)), dim=-1)


def test_unicycle_state_is_the_polar_transform_with_its_jacobian():
    g = gen(7)
    pos, pos_cov = torch.tensor([3.0, 4.0], dtype=F64), random_spd(g, (), 2, 0.2)
    vel, vel_cov = torch.tensor([-6.0, 8.0], dtype=F64), random_spd(g, (), 2, 0.2)
    state, state_cov = unicycle_state(pos, pos_cov, vel, vel_cov)
    torch.testing.assert_close(state, torch.cat((pos, polar(vel))))
    jac = torch.autograd.functional.jacobian(polar, vel)
    torch.testing.assert_close(state_cov[2:, 2:], jac @ vel_cov @ jac.T, rtol=1e-3, atol=0)  # speed_eff ~ speed
    torch.testing.assert_close(state_cov[:2, :2], pos_cov)
    assert torch.equal(state_cov[:2, 2:], torch.zeros(2, 2, dtype=F64))
    assert torch.equal(state_cov, state_cov.T)


def test_unicycle_state_covariance_matches_monte_carlo():
    g = gen(8)
    vel = torch.tensor([3.0, 4.0], dtype=F64)
    vel_cov = torch.tensor([[0.04, 0.01], [0.01, 0.09]], dtype=F64)
    _, state_cov = unicycle_state(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64), vel, vel_cov)
    samples = polar(gaussian_samples(g, vel, vel_cov, 200_000))
    assert float(rel_err(state_cov[2:, 2:], sample_cov(samples))) < 0.02


def test_unicycle_state_at_standstill_caps_heading_variance_and_stays_differentiable():
    vel = torch.zeros(3, 2, dtype=F64, requires_grad=True)
    vel_cov = torch.tensor([1e-4, 1.0, 100.0], dtype=F64)[:, None, None] * torch.eye(2, dtype=F64)
    vel_cov.requires_grad_(True)
    pos = torch.zeros(3, 2, dtype=F64, requires_grad=True)
    state, state_cov = unicycle_state(pos, torch.eye(2, dtype=F64).expand(3, 2, 2), vel, vel_cov)
    assert torch.equal(state[:, 2:], torch.zeros(3, 2, dtype=F64))
    heading_var = state_cov[:, 2, 2]
    assert bool((heading_var <= HEADING_VAR_CAP).all())
    assert float(heading_var[2].detach()) > 0.99 * HEADING_VAR_CAP  # noise far above the floor: at the cap
    (state.sum() + state_cov.sum()).backward()
    for name, t in {"vel": vel, "vel_cov": vel_cov, "pos": pos}.items():
        assert bool(torch.isfinite(t.grad).all()), name


def test_unicycle_state_heading_variance_falls_with_speed_and_stays_below_the_cap():
    speeds = torch.tensor([0.0, 0.01, 0.1, 1.0, 10.0], dtype=F64)
    vel = torch.stack((speeds, torch.zeros_like(speeds)), dim=-1)
    vel_cov = 0.25 * torch.eye(2, dtype=F64).expand(5, 2, 2)
    _, state_cov = unicycle_state(torch.zeros(5, 2, dtype=F64), vel_cov, vel, vel_cov)
    heading_var = state_cov[:, 2, 2]
    assert bool((heading_var[1:] < heading_var[:-1]).all())
    assert bool((heading_var <= HEADING_VAR_CAP).all())
    speed_eff_sq = speeds**2 + 0.25 / HEADING_VAR_CAP + SPEED_FLOOR**2
    torch.testing.assert_close(heading_var, 0.25 / speed_eff_sq, rtol=1e-12, atol=0)
    assert float(heading_var[-1]) == pytest.approx(0.25 / 100, rel=2e-3)  # the linearisation, sigma^2 / v^2


# -- standstill and zero yaw rate end to end -----------------------------------------------


@pytest.mark.parametrize("accel", [0.0, 1.0])
def test_zero_speed_and_zero_yaw_rate_give_finite_outputs_and_gradients(accel: float):
    leaves = {
        "pos": torch.zeros(2, 2),
        "pos_cov": torch.zeros(2, 2, 2),
        "vel": torch.zeros(2, 2),
        "vel_cov": torch.zeros(2, 2, 2),  # no noise either: the fully degenerate case
        "control": torch.tensor([0.0, accel]).expand(2, HORIZON, 2).clone(),
        "control_cov": torch.zeros(2, HORIZON, 2, 2),
        "ped_vel": torch.zeros(2, HORIZON, 2),
        "weights": torch.tensor([[1.0, 0.0], [0.5, 0.5]]),
    }
    for leaf in leaves.values():
        leaf.requires_grad_(True)
    chol, outputs = chained(**leaves, ped_vel_cov=torch.zeros(2, HORIZON, 2, 2))
    for name, out in outputs.items():
        assert bool(torch.isfinite(out).all()), name
    assert bool((torch.diagonal(chol, dim1=-2, dim2=-1) > 0).all())
    sum(out.sum() for out in outputs.values()).backward()
    for name, leaf in leaves.items():
        assert leaf.grad is not None and bool(torch.isfinite(leaf.grad).all()), name


def chained(
    pos: Tensor,
    pos_cov: Tensor,
    vel: Tensor,
    vel_cov: Tensor,
    control: Tensor,
    control_cov: Tensor,
    ped_vel: Tensor,
    weights: Tensor,
    ped_vel_cov: Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The chain the predictor runs: vehicle and pedestrian dynamics, blended, factored."""
    state, state_cov = unicycle_state(pos, pos_cov, vel, vel_cov)
    car, car_cov = unicycle(state, state_cov, control, control_cov, DT)
    walker, walker_cov = single_integrator(pos, pos_cov, ped_vel, ped_vel_cov, DT)
    mean, cov = moment_match(weights, torch.stack((car, walker), dim=-3), torch.stack((car_cov, walker_cov), dim=-4))
    chol = cholesky_2x2(cov)
    return chol, {"state": state, "state_cov": state_cov, "car": car, "car_cov": car_cov, "mean": mean, "chol": chol}


# -- moment matching ----------------------------------------------------------------------


def test_moment_match_hand_formula():
    weights = torch.tensor([0.25, 0.75], dtype=F64)
    means = torch.tensor([[[0.0, 0.0]], [[4.0, 2.0]]], dtype=F64)  # [C=2, T=1, 2]
    covs = torch.stack((torch.eye(2, dtype=F64), 2 * torch.eye(2, dtype=F64)))[:, None]  # [C, T, 2, 2]
    mean, cov = moment_match(weights, means, covs)
    torch.testing.assert_close(mean, torch.tensor([[3.0, 1.5]], dtype=F64))
    # within: 0.25 * 1 + 0.75 * 2 = 1.75 on the diagonal; between: 0.25 * 0.75 * d d^T with d = (4, 2).
    between = 0.25 * 0.75 * torch.tensor([[16.0, 8.0], [8.0, 4.0]], dtype=F64)
    torch.testing.assert_close(cov, (1.75 * torch.eye(2, dtype=F64) + between)[None])


def test_moment_match_matches_samples_of_the_mixture():
    g = gen(9)
    n, C, T = 200_000, 3, 2
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=F64)
    means = torch.randn(C, T, 2, generator=g, dtype=F64) * 3
    covs = random_spd(g, (C, T), 2, 0.7)
    mean, cov = moment_match(weights, means, covs)
    component = torch.multinomial(weights, n, replacement=True, generator=g)  # [n]
    samples = gaussian_samples(g, means[component], covs[component], 1)[0]  # [n, T, 2]
    spread = torch.sqrt(torch.diagonal(cov, dim1=-2, dim2=-1))
    assert float(((samples.mean(0) - mean) / spread).abs().max()) < 0.02
    assert float(rel_err(cov, sample_cov(samples)).max()) < 0.02


def test_moment_match_ignores_a_zero_weight_component_even_with_an_infinite_mean():
    g = gen(10)
    means = torch.randn(4, 2, HORIZON, 2, generator=g, dtype=F64)
    covs = random_spd(g, (4, 2, HORIZON), 2, 0.5)
    means[:, 1], covs[:, 1] = math.inf, math.inf  # the vehicle branch of pure pedestrians, say
    weights = torch.tensor([1.0, 0.0], dtype=F64).expand(4, 2).clone()
    for leaf in (weights, means, covs):
        leaf.requires_grad_(True)
    mean, cov = moment_match(weights, means, covs)
    torch.testing.assert_close(mean, means[:, 0].detach())
    torch.testing.assert_close(cov, covs[:, 0].detach())
    (mean.sum() + cov.sum()).backward()
    for name, leaf in {"weights": weights, "means": means, "covs": covs}.items():
        assert bool(torch.isfinite(leaf.grad).all()), name
    assert torch.equal(means.grad[:, 1], torch.zeros_like(means.grad[:, 1]))


# -- Cholesky factors ---------------------------------------------------------------------


def test_cholesky_2x2_matches_torch_linalg():
    g = gen(11)
    cov = random_spd(g, (5, 7), 2, 1.5)
    cov = cov + 1e-3 * torch.randn(5, 7, 2, 2, generator=g, dtype=F64)  # a slightly asymmetric input
    jitter = 1e-6
    want = torch.linalg.cholesky(0.5 * (cov + cov.transpose(-1, -2)) + jitter * torch.eye(2, dtype=F64))
    torch.testing.assert_close(cholesky_2x2(cov, jitter), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "cov",
    [[[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 4.0]], [[1e4, -1e4], [-1e4, 1e4]]],
)
def test_cholesky_2x2_has_a_positive_diagonal_and_finite_gradients_on_singular_input(cov: list):
    matrix = torch.tensor(cov, dtype=torch.float32, requires_grad=True)
    chol = cholesky_2x2(matrix)
    assert bool((torch.diagonal(chol) > 0).all())
    assert float(chol[0, 1].detach()) == 0.0
    scale = max(1.0, float(matrix.detach().abs().max()))
    torch.testing.assert_close(chol @ chol.T, matrix.detach(), rtol=0, atol=1e-5 * scale)
    chol.sum().backward()
    assert bool(torch.isfinite(matrix.grad).all())


def test_cholesky_2x2_rejects_a_non_positive_jitter():
    with pytest.raises(ContractError, match="cholesky_2x2.jitter"):
        cholesky_2x2(torch.eye(2), jitter=0.0)


# -- argument checks ------------------------------------------------------------------------


def z(*shape: int) -> Tensor:
    return torch.zeros(*shape)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: single_integrator(z(3), z(2, 2), z(5, 2), z(5, 2, 2), DT), r"single_integrator\.pos0: .*2\]"),
        (lambda: single_integrator(z(2), z(2, 2), z(5, 2), z(4, 2, 2), DT), r"single_integrator\.vel_cov: .*T = 5"),
        (lambda: single_integrator(z(2), z(2, 2), z(5, 2), z(5, 2, 2), -0.1), r"single_integrator\.dt"),
        (lambda: unicycle_state(z(2), z(2, 2), z(2), z(2)), r"unicycle_state\.vel_cov"),
        (lambda: unicycle(z(3), z(4, 4), z(5, 2), z(5, 2, 2), DT), r"unicycle\.state0: .*\[\.\.\., 4\]"),
        (lambda: unicycle(z(4), z(4, 4), z(5, 3), z(5, 2, 2), DT), r"unicycle\.control: .*\[\.\.\., T, 2\]"),
        (lambda: unicycle(z(4), z(4, 4), z(5, 2), z(6, 2, 2), DT), r"unicycle\.control_cov: .*T = 5"),
        (lambda: unicycle(z(4), z(4, 4), z(5, 2), z(5, 2, 2), 0), r"unicycle\.dt"),
        (lambda: moment_match(z(3), z(2, 5, 2), z(2, 5, 2, 2)), r"moment_match\.means: .*3"),
        (lambda: moment_match(z(2), z(2, 5, 2), z(2, 4, 2, 2)), r"moment_match\.covs: .*5"),
        (lambda: cholesky_2x2(z(3, 3)), r"cholesky_2x2\.cov"),
        (lambda: unicycle_transition(z(4), torch.zeros(2, dtype=torch.long), DT), r"transition\.control.*dtype"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(call, message: str):
    with pytest.raises(ContractError, match=message):
        call()


# -- ONNX export ------------------------------------------------------------------------------


class DynamicsGraph(nn.Module):
    """The predictor's dynamics chain as a module, for export."""

    names = ("pos", "pos_cov", "vel", "vel_cov", "control", "control_cov", "ped_vel", "weights", "ped_vel_cov")

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        _, out = chained(*inputs)
        return out["car"], out["car_cov"], out["mean"], out["chol"]


def export_inputs(batch: int, seed: int) -> tuple[Tensor, ...]:
    """float32 inputs; agent 0 stands still with zero yaw rate, agent 1 turns hard (closed-form branch)."""
    g = gen(seed)
    vel = torch.randn(batch, 2, generator=g) * 5
    vel[0] = 0.0
    control = torch.randn(batch, HORIZON, 2, generator=g) * 0.5
    control[0, :, 0] = 0.0
    control[1, :, 0] = 6.0
    weights = torch.softmax(torch.randn(batch, 2, generator=g), dim=-1)
    weights[0] = torch.tensor([0.0, 1.0])
    return (
        torch.randn(batch, 2, generator=g) * 10,
        random_spd(g, (batch,), 2, 0.3).float(),
        vel,
        random_spd(g, (batch,), 2, 0.3).float(),
        control,
        random_spd(g, (batch, HORIZON), 2, 0.1).float(),
        torch.randn(batch, HORIZON, 2, generator=g),
        weights,
        random_spd(g, (batch, HORIZON), 2, 0.2).float(),
    )


def test_dynamics_export_to_onnx_and_match_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    graph, buffer = DynamicsGraph().eval(), io.BytesIO()
    outputs = ["car", "car_cov", "mean", "chol"]
    names = list(DynamicsGraph.names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            export_inputs(3, seed=12),
            buffer,
            input_names=names,
            output_names=outputs,
            dynamic_axes={name: {0: "agents"} for name in names + outputs},
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    inputs = export_inputs(6, seed=13)  # other agents and another count than the traced ones
    declared = {i.name for i in session.get_inputs()}
    got = session.run(None, {name: x.numpy() for name, x in zip(names, inputs, strict=True) if name in declared})
    with torch.no_grad():
        want = graph(*inputs)
    for name, value, expected in zip(outputs, got, want, strict=True):
        assert bool(torch.isfinite(expected).all()), name
        torch.testing.assert_close(torch.from_numpy(value), expected, rtol=1e-4, atol=1e-4, msg=name)


def test_unicycle_path_is_the_mean_of_the_covariance_propagation():
    g = torch.Generator().manual_seed(3)
    state0 = torch.tensor([[1.0, -2.0, 0.3, 4.0], [0.0, 0.0, -1.0, 0.0]])
    control = torch.randn(2, 6, 2, generator=g) * torch.tensor([0.4, 1.5])
    zero_cov = torch.zeros(2, 4, 4)
    expected, _ = unicycle(state0, zero_cov, control, torch.zeros(2, 6, 2, 2), 0.4)
    assert torch.allclose(unicycle_path(state0, control, 0.4), expected, atol=1e-6)
