"""The pedestrian path likelihood against an explicit 2T-dimensional Gaussian."""

from __future__ import annotations

import torch
from torch.distributions import MultivariateNormal

from prediction.dynamics import single_integrator
from prediction.likelihood import observed_prefix, path_log_prob

DT = 0.4


def random_factors(g: torch.Generator, *shape: int) -> torch.Tensor:
    root = torch.randn(*shape, 2, 2, generator=g, dtype=torch.float64) * 0.3
    return torch.linalg.cholesky(root @ root.transpose(-1, -2) + 0.05 * torch.eye(2, dtype=torch.float64))


def explicit_increment_cov(pos0_cov, step_chol, shared_chol, steps: int) -> torch.Tensor:
    """[2n, 2n] covariance of the first n increments d_t = y_t - y_{t-1} (y_0 = the mean start)."""
    n = steps
    cov = torch.zeros(2 * n, 2 * n, dtype=torch.float64)
    for t in range(n):
        block = DT**2 * step_chol[t] @ step_chol[t].T + (pos0_cov if t == 0 else 0)
        cov[2 * t : 2 * t + 2, 2 * t : 2 * t + 2] += block
        for s in range(n):
            cov[2 * t : 2 * t + 2, 2 * s : 2 * s + 2] += DT**2 * shared_chol[t] @ shared_chol[s].T
    return cov


def test_path_log_prob_is_the_joint_gaussian_density_of_the_increments():
    g = torch.Generator().manual_seed(0)
    T, K = 6, 3
    pos0 = torch.randn(1, 1, 2, generator=g, dtype=torch.float64)
    start = random_factors(g, 1, 1)
    pos0_cov = start @ start.transpose(-1, -2) * 0.1
    velocity = torch.randn(1, 1, K, T, 2, generator=g, dtype=torch.float64)
    step_chol, shared_chol = random_factors(g, 1, 1, K, T), random_factors(g, 1, 1, K, T)
    future = pos0[:, :, None] + torch.randn(1, 1, T, 2, generator=g, dtype=torch.float64).cumsum(dim=2) * 0.5
    present = torch.tensor([[[True, True, True, True, False, True]]])  # leaves after step 4: prefix of 4
    scored = observed_prefix(present)
    got = path_log_prob(future, scored, pos0, pos0_cov, velocity, step_chol, shared_chol, DT)
    n = 4
    increments = (future - torch.cat((pos0[:, :, None], future[:, :, :-1]), dim=2))[0, 0, :n].reshape(-1)
    for k in range(K):
        cov = explicit_increment_cov(pos0_cov[0, 0], step_chol[0, 0, k], shared_chol[0, 0, k], n)
        mean = (DT * velocity[0, 0, k, :n]).reshape(-1)
        expected = MultivariateNormal(mean, covariance_matrix=cov).log_prob(increments)
        assert torch.allclose(got[0, 0, k], expected, atol=1e-9)


def test_drift_and_step_noise_have_the_same_marginals_but_different_paths():
    """A persistent drift and per-step noise can give equal per-step position marginals only in the first
    step; the joint density must prefer the drift for a smoothly deviating path."""
    T = 8
    zero = torch.zeros(1, 1, 2, dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    velocity = torch.zeros(1, 1, 1, T, 2, dtype=torch.float64)
    smooth = (torch.arange(1, T + 1, dtype=torch.float64) * DT * 0.5)[None, None, :, None] * torch.tensor([1.0, 0.0])
    scored = torch.ones(1, 1, T, dtype=torch.bool)
    small = 1e-3 * eye.expand(1, 1, 1, T, 2, 2)
    drift_model = path_log_prob(
        smooth, scored, zero, 1e-6 * eye[None, None], velocity, small, 0.5 * eye.expand(1, 1, 1, T, 2, 2), DT
    )
    noise_model = path_log_prob(
        smooth, scored, zero, 1e-6 * eye[None, None], velocity, 0.5 * eye.expand(1, 1, 1, T, 2, 2), small, DT
    )
    assert float(drift_model) > float(noise_model)


def test_single_integrator_with_drift_has_the_paths_marginals():
    g = torch.Generator().manual_seed(1)
    T = 5
    pos0_cov = 0.01 * torch.eye(2, dtype=torch.float64)
    step_chol, shared_chol = random_factors(g, T), random_factors(g, T)
    _, cov = single_integrator(torch.zeros(2, dtype=torch.float64), pos0_cov, torch.zeros(T, 2, dtype=torch.float64),
                               step_chol @ step_chol.transpose(-1, -2), DT, shared_chol=shared_chol)  # fmt: skip
    increments = explicit_increment_cov(pos0_cov, step_chol, shared_chol, T)
    cumulative = torch.kron(torch.tril(torch.ones(T, T, dtype=torch.float64)), torch.eye(2, dtype=torch.float64))
    positions = cumulative @ increments @ cumulative.T
    for t in range(T):
        assert torch.allclose(cov[t], positions[2 * t : 2 * t + 2, 2 * t : 2 * t + 2], atol=1e-10)


def test_observed_prefix_stops_at_the_first_hole():
    present = torch.tensor([[True, True, False, True], [False, True, True, True]])
    assert observed_prefix(present).tolist() == [[True, True, False, False], [False, False, False, False]]
