"""Contract owned by prediction: `Forecast`, a Gaussian-mixture future per agent.

Each agent's future over `T` steps is a mixture of `K` modes; within a mode the
steps are independent 2-D Gaussians given by their mean and Cholesky factor.
Positions are in the ego frame at the current time, SI units; step t lies
`(t + 1) * Timing.sample_dt` seconds ahead (step 0 is the first future step).

The forecast is a distribution object, not bare tensors: `distribution()`
returns a `torch.distributions` mixture, and `sample(noise_mode, noise_pos)`
draws reparameterised samples from noise the caller passes in, so the graph
holds no random number generator and exports deterministically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
)

from core.contracts import ContractError, TensorContract, check_simplex, spec
from sim.state import NUM_CLASSES

LOG_WEIGHT_TOL = 1e-4


@dataclass(frozen=True)
class Forecast(TensorContract):
    """Multimodal future positions of the tracked agents; agent a is in use iff `valid`.

    Attributes:
        log_weights: [B, A, K] float, log mode probabilities, log-softmax
            normalised: logsumexp over K is 0 for valid agents.
        means: [B, A, K, T, 2] float, mean box-centre position per mode and
            future step, m, ego frame at the current time.
        chol: [B, A, K, T, 2, 2] float, lower-triangular Cholesky factor L of the
            position covariance L L^T, m; strictly-upper entries are 0 and the
            diagonal is > 0 for valid agents.
        existence: [B, A] float in [0, 1], probability that the agent is real,
            carried through from `Tracks`.
        class_probs: [B, A, 3] float in [0, 1], (vehicle, pedestrian, cyclist),
            carried through from `Tracks`; each valid row sums to 1.
        valid: [B, A] bool, slot holds an agent.
    """

    log_weights: Tensor = spec(("B", "A", "K"))
    means: Tensor = spec(("B", "A", "K", "T", 2))
    chol: Tensor = spec(("B", "A", "K", "T", 2, 2))
    existence: Tensor = spec(("B", "A"), prob=True)
    class_probs: Tensor = spec(("B", "A", NUM_CLASSES), prob=True)
    valid: Tensor = spec(("B", "A"), "bool")

    MASK_FIELD = "valid"

    # -- sizes and derived tensors --------------------------------------
    @property
    def num_modes(self) -> int:
        return int(self.log_weights.shape[-1])

    @property
    def horizon_steps(self) -> int:
        return int(self.means.shape[-2])

    @property
    def weights(self) -> Tensor:
        """[B, A, K] float, mode probabilities."""
        return self.log_weights.exp()

    @property
    def covariance(self) -> Tensor:
        """[B, A, K, T, 2, 2] float, position covariance L L^T, m^2."""
        return self.chol @ self.chol.transpose(-1, -2)

    # -- validation -----------------------------------------------------
    def _check(self, sizes: dict[str, int]) -> None:
        lse = torch.logsumexp(self.log_weights.double(), dim=-1).abs()
        lse = torch.where(self.valid, lse, torch.zeros_like(lse))
        if bool((lse > LOG_WEIGHT_TOL).any()):
            raise ContractError(
                "Forecast.log_weights: expected logsumexp over modes to be 0 (log-softmax), "
                f"worst |logsumexp| {float(lse.max()):.3g}"
            )
        check_simplex("Forecast.class_probs", self.class_probs, self.valid)
        self._check_chol()

    def _check_chol(self) -> None:
        agents = self.valid[:, :, None, None]  # broadcast over K, T
        upper = torch.triu(self.chol, diagonal=1).abs().amax(dim=(-1, -2))
        if bool(((upper > 0) & agents).any()):
            raise ContractError("Forecast.chol: expected lower-triangular factors (upper part 0)")
        diag = torch.diagonal(self.chol, dim1=-2, dim2=-1).amin(dim=-1)
        if bool(((diag <= 0) & agents).any()):
            worst = float(diag[agents.expand_as(diag)].min())
            raise ContractError(f"Forecast.chol: expected a positive diagonal, min is {worst:.3g}")

    # -- distributions --------------------------------------------------
    def _safe(self) -> tuple[Tensor, Tensor, Tensor]:
        """(log_weights, means, chol) with invalid agents set to a unit Gaussian at 0.

        Empty slots may hold any finite filler (e.g. an all-zero Cholesky factor),
        which would turn into NaNs in log_prob; a uniform mixture of unit
        Gaussians keeps every output finite and gives those slots zero gradient.
        """
        valid = self.valid
        uniform = torch.full_like(self.log_weights, -math.log(self.num_modes))
        log_weights = torch.where(valid[..., None], self.log_weights, uniform)
        means = torch.where(valid[..., None, None, None], self.means, torch.zeros_like(self.means))
        eye = torch.eye(2, dtype=self.chol.dtype, device=self.chol.device)
        chol = torch.where(valid[..., None, None, None, None], self.chol, eye)
        return log_weights, means, chol

    def distribution(self) -> MixtureSameFamily:
        """Mixture over whole trajectories: batch shape [B, A], event shape [T, 2].

        Steps are independent given the mode. Arguments are not re-validated
        here (that is `validate()`'s job), which keeps the call traceable.
        """
        log_weights, means, chol = self._safe()
        # batch x event: modes [B, A] x [], steps [B, A, K, T] x [2], paths [B, A, K] x [T, 2]
        modes = Categorical(logits=log_weights, validate_args=False)
        steps = MultivariateNormal(means, scale_tril=chol, validate_args=False)
        paths = Independent(steps, 1, validate_args=False)
        return MixtureSameFamily(modes, paths, validate_args=False)

    def sample(self, noise_mode: Tensor, noise_pos: Tensor) -> Tensor:
        """Reparameterised samples [B, A, S, T, 2] from caller-supplied noise.

        Args:
            noise_mode: [B, A, S] float uniform in [0, 1); sample s takes the
                mode found by inverse CDF over the mode weights.
            noise_pos: [B, A, S, T, 2] float standard normal; the sample is
                `means[k] + chol[k] @ noise_pos`.

        Gradients reach `means` and `chol`; the discrete mode pick has none.
        Invalid agents get samples of a unit Gaussian at the origin (finite filler).
        """
        self._check_noise(noise_mode, noise_pos)
        log_weights, means, chol = self._safe()
        cdf = torch.softmax(log_weights.detach(), dim=-1).cumsum(dim=-1)  # [B, A, K]
        # The first k with u < cdf[k]; the clamp covers rounding that leaves cdf[-1] below u.
        mode = (cdf.unsqueeze(-2) <= noise_mode.unsqueeze(-1)).sum(dim=-1)  # [B, A, S]
        mode = mode.clamp(max=self.num_modes - 1)
        mean = means.gather(2, mode[..., None, None].expand_as(noise_pos))  # [B, A, S, T, 2]
        index = mode[..., None, None, None].expand(-1, -1, -1, self.horizon_steps, 2, 2)
        scale = chol.gather(2, index)  # [B, A, S, T, 2, 2]
        # chol @ noise written out for 2x2 (a traced matmul-then-squeeze exports as an ONNX If under a dynamic S).
        return mean + (scale * noise_pos.unsqueeze(-2)).sum(-1)

    def _check_noise(self, noise_mode: Tensor, noise_pos: Tensor) -> None:
        B, A, _ = self.log_weights.shape
        if noise_mode.dim() != 3 or tuple(noise_mode.shape[:2]) != (B, A):
            raise ContractError(f"Forecast.sample: noise_mode must be [B={B}, A={A}, S], got {tuple(noise_mode.shape)}")
        want = (B, A, noise_mode.shape[2], self.horizon_steps, 2)
        if tuple(noise_pos.shape) != want:
            raise ContractError(
                f"Forecast.sample: noise_pos must be [B, A, S, T, 2] = {want}, got {tuple(noise_pos.shape)}"
            )

    def sample_noise(self, samples: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Noise for `sample` drawn from `generator`: ([B, A, S], [B, A, S, T, 2])."""
        B, A, _ = self.log_weights.shape
        kw = {"generator": generator, "device": self.device, "dtype": self.means.dtype}
        noise_mode = torch.rand(B, A, samples, **kw)
        noise_pos = torch.randn(B, A, samples, self.horizon_steps, 2, **kw)
        return noise_mode, noise_pos

    def most_likely(self) -> Tensor:
        """[B, A, T, 2] means of each agent's highest-weight mode, 0 for invalid agents.

        For the argmax ablation and metrics only: the stack itself passes the mixture.
        """
        log_weights, means, _ = self._safe()
        best = log_weights.argmax(dim=-1)  # [B, A]
        index = best[:, :, None, None, None].expand(-1, -1, 1, self.horizon_steps, 2)
        return means.gather(2, index).squeeze(2)

    # -- construction ---------------------------------------------------
    @classmethod
    def empty(
        cls,
        batch: int,
        agents: int,
        modes: int,
        steps: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Forecast:
        """No agents: every slot invalid, uniform weights, unit Gaussians at the origin."""
        shape = (batch, agents)
        eye = torch.eye(2, device=device, dtype=dtype)
        uniform = 1.0 / NUM_CLASSES
        return cls(
            log_weights=torch.full((*shape, modes), -math.log(modes), device=device, dtype=dtype),
            means=torch.zeros(*shape, modes, steps, 2, device=device, dtype=dtype),
            chol=eye.expand(*shape, modes, steps, 2, 2).contiguous(),
            existence=torch.zeros(shape, device=device, dtype=dtype),
            class_probs=torch.full((*shape, NUM_CLASSES), uniform, device=device, dtype=dtype),
            valid=torch.zeros(shape, dtype=torch.bool, device=device),
        )
