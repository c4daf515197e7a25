"""`Predictor`: Tracks -> Forecast, a Trajectron++-style conditional VAE.

    x      = encode(tracks)                 history GRU + attention over neighbours (+ map patch, + lanes)
    p(z|x)  prior over K discrete latent values
    q(z|x,y) posterior (training only), from x and the true future y
    p(y|x,z) per-step Gaussian controls, integrated through agent dynamics with
            linearised covariance propagation into Gaussian positions

`forward(tracks)` is the deterministic output: the full mixture over all K
latent values (no sampling), decoded once into a `Forecast`. `sample_positions`
draws trajectories by sampling z and the controls from caller-supplied noise
and integrating them (so samples are smooth paths, not independent per-step
draws). Two training objectives: `elbo`, Trajectron++'s CVAE bound with a learned
posterior q(z|x,y), and `winner_takes_all`, which assigns each labelled future to
its closest mode (the default: the ELBO's posterior, and with it the prior,
collapses onto one value of z; measured in docs/benchmarks.md, issue 15).

Agent class decides the dynamics: pedestrians move as single integrators,
vehicles and cyclists as unicycles. Both are integrated for every agent and
blended by class probability (moment matching), so an uncertain class makes
an honestly wider forecast instead of an argmax.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perception.losses import gaussian_nll
from perception.types import STATE_POS, STATE_VEL, Tracks
from prediction import dynamics
from prediction.config import PredictorConfig
from prediction.decoder import ControlDecoder, ControlGaussian
from prediction.encoders import FutureEncoder, HistoryEncoder, InteractionEncoder, LaneEncoder, MapEncoder, mlp
from prediction.features import edge_features, node_features
from prediction.lanes import heading_hint
from prediction.likelihood import observed_prefix, path_log_prob
from prediction.types import Forecast
from prediction.windows import TrajectoryWindows
from sim.config import RasterConfig
from sim.state import AgentKind

PEDESTRIAN = int(AgentKind.PEDESTRIAN)


@dataclass(frozen=True)
class MapInput:
    """What the predictor reads of the map, in the frame of the tracks: the map raster `[B, C, R, R]`
    and its geometry (for the optional raster encoder, `map_channels > 0`), and the lane centrelines
    `lanes [B, N, P, 2]` with their mask `lanes_valid [B, N, P]` (for the optional lane encoder,
    `lanes`; `SensorFrame.lanes`, `TrajectoryWindows.lanes`). A model reads only what it has an
    encoder for; the others may be None."""

    raster: Tensor | None = None
    config: RasterConfig | None = None
    lanes: Tensor | None = None
    lanes_valid: Tensor | None = None

    @classmethod
    def of_windows(cls, windows: TrajectoryWindows) -> MapInput:
        """The lanes of `windows` (they carry no raster)."""
        return cls(lanes=windows.lanes, lanes_valid=windows.lanes_valid)


@dataclass(frozen=True)
class Mixture:
    """Gaussian positions for every latent value: means `[B, A, K, T, 2]`, covariances `[..., 2, 2]`,
    prior log-weights `[B, A, K]`."""

    log_prior: Tensor
    means: Tensor
    cov: Tensor


@dataclass(frozen=True)
class Labelled:
    """What the training objectives share, for the N agents with a labelled future, gathered into one
    row (`[1, N, ...]`): their encodings, `Tracks`, future prefix and its mask, the decoded controls,
    the prior log-weights `[1, N, K]` and `ll_z [1, N, K]`, log p(y | x, z) of the scored path, and
    `driven`, the vehicles' Gaussian positions (means, covariances) that `ll_z` was scored under
    (None for a pedestrian-only model). `trained [B, A]` says which slots they came from."""

    x: Tensor
    agents: Tracks
    future: Tensor
    scored: Tensor
    trained: Tensor
    pedestrian: ControlGaussian
    vehicle: ControlGaussian
    log_prior: Tensor
    ll_z: Tensor
    driven: tuple[Tensor, Tensor] | None

    def per_agent(self, **terms: Tensor) -> dict[str, Tensor]:
        """`terms` `[1, N]` and the shared ones (`log_likelihood`, `steps`) scattered back to `[B, A]`,
        plus `trained`."""
        shared = {
            "log_likelihood": torch.logsumexp(self.log_prior + self.ll_z, dim=-1),
            "steps": self.scored.sum(dim=-1).to(self.ll_z.dtype),
        }
        out = {name: _scatter(value[0], self.trained) for name, value in {**terms, **shared}.items()}
        return {**out, "trained": self.trained}


class Predictor(nn.Module):
    """See the module docstring. Positions in and out are in the frame of `tracks` (m)."""

    def __init__(self, cfg: PredictorConfig = PredictorConfig()):
        super().__init__()
        self.cfg = cfg
        self.history = HistoryEncoder(cfg)
        self.interaction = InteractionEncoder(cfg)
        self.map = MapEncoder(cfg) if cfg.map_channels > 0 else None
        self.lane_encoder = LaneEncoder(cfg) if cfg.lanes else None
        parts = 2 + (self.map is not None) + (self.lane_encoder is not None)
        self.fuse = mlp([cfg.hidden * parts, cfg.hidden, cfg.hidden], True)
        self.prior = nn.Linear(cfg.hidden, cfg.latent)
        self.future = FutureEncoder(cfg)
        self.posterior = mlp([2 * cfg.hidden, cfg.hidden, cfg.latent])
        self.decoder = ControlDecoder(cfg)

    # -- encoding ---------------------------------------------------------
    def encode(self, tracks: Tracks, map_input: MapInput | None = None) -> Tensor:
        """[B, A, hidden]: each agent's history, neighbours and (optionally) map and lanes around it."""
        steps, static = node_features(tracks, self.cfg)
        node = self.history(steps, static)
        edges, _, neighbour = edge_features(tracks, self.cfg)
        parts = [node, self.interaction(node, edges, static, neighbour)]
        position = tracks.current[..., STATE_POS]
        if self.map is not None:
            if map_input is None or map_input.raster is None:
                raise ValueError("Predictor.encode: this model has a map encoder (map_channels > 0); pass map_input "
                                 "with the raster")  # fmt: skip
            parts.append(self.map(map_input.raster, map_input.config, position))
        if self.lane_encoder is not None:
            if map_input is None or map_input.lanes is None or map_input.lanes_valid is None:
                raise ValueError("Predictor.encode: this model reads lanes (lanes=True); pass map_input with lanes "
                                 "and lanes_valid")  # fmt: skip
            parts.append(self.lane_encoder(node, position, map_input.lanes, map_input.lanes_valid))
        return self.fuse(torch.cat(parts, dim=-1))

    def heading_hint(self, tracks: Tracks, map_input: MapInput | None) -> Tensor | None:
        """[B, A, 2] the heading the lanes give each vehicle (`prediction.lanes.heading_hint`), None for a
        model without lanes: the tracker does not track heading, and a standing vehicle's velocity has none."""
        if self.lane_encoder is None or map_input is None or map_input.lanes is None:
            return None
        current = tracks.current
        return heading_hint(current[..., STATE_POS], current[..., STATE_VEL], map_input.lanes, map_input.lanes_valid)

    def log_prior(self, x: Tensor) -> Tensor:
        return torch.log_softmax(self.prior(x), dim=-1)

    def log_posterior(self, x: Tensor, future: Tensor, future_valid: Tensor, now: Tensor) -> Tensor:
        y = self.future(future, future_valid, now)
        return torch.log_softmax(self.posterior(torch.cat((x, y), dim=-1)), dim=-1)

    # -- decoding and integration ---------------------------------------------
    def controls(self, x: Tensor, tracks: Tracks) -> tuple[ControlGaussian, ControlGaussian]:
        return self.decoder(x, tracks.current[..., STATE_VEL])

    def walk(self, tracks: Tracks, pedestrian: ControlGaussian) -> tuple[Tensor, Tensor]:
        """Pedestrian dynamics (single integrator with drift): positions `[B, A, K, T, 2]`, covariances."""
        pos0, pos0_cov = tracks.current[..., STATE_POS], tracks.current_cov[..., STATE_POS, STATE_POS]
        return dynamics.single_integrator(
            _per_mode(pos0, self.cfg.latent), _per_mode(pos0_cov, self.cfg.latent), pedestrian.mean,
            pedestrian.cov, self.cfg.dt, shared_chol=pedestrian.shared_chol,
        )  # fmt: skip

    def drive(self, tracks: Tracks, vehicle: ControlGaussian, hint: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Vehicle and cyclist dynamics (unicycle, linearised): positions `[B, A, K, T, 2]`, covariances;
        `hint [B, A, 2]` the lanes' heading hint (`heading_hint`)."""
        current, cov = tracks.current, tracks.current_cov
        state0, state0_cov = dynamics.unicycle_state(
            current[..., STATE_POS], cov[..., STATE_POS, STATE_POS], current[..., STATE_VEL],
            cov[..., STATE_VEL, STATE_VEL], hint,
        )  # fmt: skip
        K = self.cfg.latent
        return dynamics.unicycle(_per_mode(state0, K), _per_mode(state0_cov, K), vehicle.mean, vehicle.cov, self.cfg.dt)

    def integrate(
        self, tracks: Tracks, pedestrian: ControlGaussian, vehicle: ControlGaussian, hint: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Positions `[B, A, K, T, 2]` and covariances `[..., 2, 2]`, both dynamics blended by class."""
        walk, walk_cov = self.walk(tracks, pedestrian)
        if not self.cfg.vehicle_dynamics:  # a static choice of the config, not of the data
            return walk, walk_cov
        drive, drive_cov = self.drive(tracks, vehicle, hint)
        p_walk = tracks.class_probs[..., PEDESTRIAN]
        weights = _per_mode(torch.stack((p_walk, 1 - p_walk), dim=-1), self.cfg.latent)  # [B, A, K, 2]
        means = torch.stack((walk, drive), dim=3)  # [B, A, K, 2, T, 2]
        covs = torch.stack((walk_cov, drive_cov), dim=3)
        return dynamics.moment_match(weights, means, covs)

    def mixture(self, tracks: Tracks, map_input: MapInput | None = None, x: Tensor | None = None) -> Mixture:
        x = self.encode(tracks, map_input) if x is None else x
        means, cov = self.integrate(tracks, *self.controls(x, tracks), self.heading_hint(tracks, map_input))
        return Mixture(log_prior=self.log_prior(x), means=means, cov=cov)

    def forward(self, tracks: Tracks, map_input: MapInput | None = None) -> Forecast:
        """The full K-mode mixture as a `Forecast` (deterministic; existence and classes carried through)."""
        mix = self.mixture(tracks, map_input)
        return Forecast(
            log_weights=mix.log_prior,
            means=mix.means,
            chol=dynamics.cholesky_2x2(mix.cov),
            existence=tracks.existence,
            class_probs=tracks.class_probs,
            valid=tracks.valid,
        )

    # -- sampling ---------------------------------------------------------------
    def sample_positions(self, tracks: Tracks, noise: SampleNoise, map_input: MapInput | None = None) -> Tensor:
        """[B, A, N, T, 2] trajectories: z from the prior, the start state and the controls from
        their Gaussians, integrated through the dynamics of a class drawn from the class probabilities."""
        cfg = self.cfg
        x = self.encode(tracks, map_input)
        pedestrian, vehicle = self.controls(x, tracks)
        cdf = torch.softmax(self.prior(x), dim=-1).cumsum(dim=-1)  # [B, A, K]
        z = (cdf.unsqueeze(-2) <= noise.mode.unsqueeze(-1)).sum(dim=-1).clamp(max=cfg.latent - 1)  # [B, A, N]
        current, cov = tracks.current, tracks.current_cov
        start = current[:, :, None, :] + (dynamics_chol4(cov)[:, :, None] @ noise.start[..., None]).squeeze(-1)
        pos0, vel0 = start[..., STATE_POS], start[..., STATE_VEL]  # [B, A, N, 2]
        walk_u = _pick(pedestrian, z, noise.control, noise.shared)
        walk = pos0[..., None, :] + cfg.dt * walk_u.cumsum(dim=-2)
        if not cfg.vehicle_dynamics:
            return walk
        drive_u = _pick(vehicle, z, noise.control)
        zero2 = torch.zeros(*pos0.shape, 2, dtype=pos0.dtype, device=pos0.device)
        hint = self.heading_hint(tracks, map_input)
        state0, _ = dynamics.unicycle_state(pos0, zero2, vel0, zero2, None if hint is None else hint[:, :, None])
        drive = dynamics.unicycle_path(state0, drive_u, cfg.dt)
        walks = noise.kind < tracks.class_probs[..., PEDESTRIAN, None]  # [B, A, N]
        return torch.where(walks[..., None, None], walk, drive)

    # -- training objectives ----------------------------------------------------
    def labelled(
        self, tracks: Tracks, future: Tensor, future_valid: Tensor, map_input: MapInput | None = None
    ) -> Labelled:
        """The pieces both objectives score, for the agents with a labelled future (see `Labelled`).

        `future [B, A, T, 2]` (m, frame of `tracks`) and `future_valid [B, A, T]` are the labels.
        The future is scored up to the agent's first missing step (`observed_prefix`).
        """
        x = self.encode(tracks, map_input)
        scored = observed_prefix(future_valid)
        trained = tracks.valid & scored.any(dim=-1)
        # Decoding is per agent once x is known: decode only the trained agents, not the padding slots.
        pick = lambda t: t[trained].unsqueeze(0)  # noqa: E731  [B, A, ...] -> [1, N, ...]
        agents = dataclasses.replace(tracks, **{name: pick(getattr(tracks, name)) for name in tracks.field_names()})
        x, future, scored = pick(x), pick(future), pick(scored)
        hint = self.heading_hint(tracks, map_input)
        hint = None if hint is None else pick(hint)
        pedestrian, vehicle = self.controls(x, agents)
        driven = self.drive(agents, vehicle, hint) if self.cfg.vehicle_dynamics else None  # integrated once, used twice
        return Labelled(
            x=x, agents=agents, future=future, scored=scored, trained=trained, pedestrian=pedestrian,
            vehicle=vehicle, log_prior=self.log_prior(x),
            ll_z=self.path_log_likelihood(agents, future, scored, pedestrian, driven), driven=driven,
        )  # fmt: skip

    def elbo(
        self, tracks: Tracks, future: Tensor, future_valid: Tensor, map_input: MapInput | None = None
    ) -> dict[str, Tensor]:
        """Per-agent terms `[B, A]` of the ELBO with the posterior enumerated exactly over all K values.

        Returns `reconstruction` (E_q log p(y|x,z) of the whole scored path), `kl` (KL(q || p)),
        `log_likelihood` (log p(y|x) = log sum_z p(z|x) p(y|x,z), the model's path likelihood),
        `steps` (scored future steps) and `trained` (agents with at least one).
        """
        lab = self.labelled(tracks, future, future_valid, map_input)
        log_q = self.log_posterior(lab.x, lab.future, lab.scored, lab.agents.current[..., STATE_POS])
        q = log_q.exp()
        return lab.per_agent(reconstruction=(q * lab.ll_z).sum(dim=-1), kl=(q * (log_q - lab.log_prior)).sum(dim=-1))

    def winner_takes_all(
        self, tracks: Tracks, future: Tensor, future_valid: Tensor, map_input: MapInput | None = None,
        relax: float = 0.05,
    ) -> dict[str, Tensor]:  # fmt: skip
        """Per-agent terms `[B, A]` of the mode-assignment objective (MultiPath, MTR; relaxed as in
        Rupprecht et al. 2017), the remedy for a collapsed prior.

        The winner is the mode whose mean path lies closest to the truth (ADE over the scored
        steps). It takes `1 - relax` of the reconstruction weight and the others share `relax`
        (so no mode is left untrained); the prior learns which mode wins (`classification`, the
        cross-entropy -log p(z = winner | x)). The prior is then the probability that a mode is
        the best of the K, which is what a planner weighing alternatives needs; each mode's
        Gaussian learns the spread around its own mean only, so modes stay apart instead of one
        wide mode absorbing the others.

        The likelihood alone moves the winner's mean slowly: a wide pedestrian drift explains
        a turn as well as a turned mean does. `distance` (the winner's mean-path error, m summed
        over the scored steps) is the regression term that pulls the mean onto the truth.

        Returns `reconstruction`, `classification`, `distance`, `log_likelihood`, `steps`,
        `trained`, and `winner` (the winning mode, -1 where nothing is trained).
        """
        lab = self.labelled(tracks, future, future_valid, map_input)
        means = self.mode_means(lab)  # [1, N, K, T, 2]
        step_error = (means - lab.future[:, :, None]).norm(dim=-1)  # [1, N, K, T]
        ade = torch.where(lab.scored[:, :, None], step_error, torch.zeros_like(step_error)).sum(dim=-1)
        winner = ade.argmin(dim=-1)  # [1, N]
        K = self.cfg.latent
        won = F.one_hot(winner, K).to(lab.ll_z.dtype)
        share = won if K == 1 else won * (1 - relax) + (1 - won) * (relax / (K - 1))
        classification = -lab.log_prior.gather(-1, winner[..., None]).squeeze(-1)
        distance = ade.gather(-1, winner[..., None]).squeeze(-1)  # m, summed over the scored steps
        terms = lab.per_agent(
            reconstruction=(share * lab.ll_z).sum(dim=-1), classification=classification, distance=distance
        )
        slots = torch.full(lab.trained.shape, -1, dtype=torch.long, device=winner.device)
        return {**terms, "winner": slots.masked_scatter(lab.trained, winner[0])}

    def mode_means(self, lab: Labelled) -> Tensor:
        """[1, N, K, T, 2] each mode's mean path, both dynamics blended by class (the mean `integrate` gives),
        reusing the vehicles' integration the likelihood already did."""
        walk, _ = self.walk(lab.agents, lab.pedestrian)
        if lab.driven is None:
            return walk
        p_walk = lab.agents.class_probs[..., PEDESTRIAN, None, None, None]
        return p_walk * walk + (1 - p_walk) * lab.driven[0]

    def path_log_likelihood(
        self, tracks: Tracks, future: Tensor, scored: Tensor, pedestrian: ControlGaussian,
        driven: tuple[Tensor, Tensor] | None,
    ) -> Tensor:  # fmt: skip
        """[B, A, K] log p(y | x, z) of each agent's scored future prefix, per latent value.

        Pedestrians: the exact density of the whole path (`prediction.likelihood`).
        Vehicles and cyclists: the sum of the per-step marginal log-densities of the
        linearised unicycle (its steps' correlations are not modelled). An agent of
        uncertain class gets the class-weighted sum, the expected log-likelihood
        under its class distribution (a lower bound of the blend's). `driven` holds the
        vehicles' Gaussian positions (`drive`); None for a pedestrian-only model.
        """
        pos0, pos0_cov = tracks.current[..., STATE_POS], tracks.current_cov[..., STATE_POS, STATE_POS]
        walk = path_log_prob(future, scored, pos0, pos0_cov, pedestrian.mean, pedestrian.chol,
                             pedestrian.shared_chol, self.cfg.dt)  # fmt: skip
        if driven is None:
            return walk
        means, cov = driven
        per_step = -gaussian_nll(future[:, :, None], means, cov)  # [B, A, K, T] log-densities
        drive = torch.where(scored[:, :, None], per_step, torch.zeros_like(per_step)).sum(dim=-1)
        p_walk = tracks.class_probs[..., PEDESTRIAN, None]
        return p_walk * walk + (1 - p_walk) * drive


def _scatter(values: Tensor, mask: Tensor) -> Tensor:
    """[N] values of the True entries of `mask [B, A]` -> [B, A] (0 elsewhere), differentiable."""
    out = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    return out.masked_scatter(mask, values)


@dataclass(frozen=True)
class SampleNoise:
    """Caller-supplied noise for `Predictor.sample_positions` (N samples per agent).

    mode: [B, A, N] uniform, picks z by inverse CDF of the prior. Drawn stratified (`draw`): the N
        values are (n + u) / N, n = 0..N-1, with one u ~ U[0, 1) per agent, in a random order, so each
        sample is still a draw from the prior while the N together visit its modes in proportion to
        their weights (systematic sampling; independent draws would repeat the heavy modes and skip
        light ones by chance).
    kind: [B, A, N] uniform, picks the dynamics (pedestrian if below its class probability).
    start: [B, A, N, 4] standard normal, perturbs the current (x, y, vx, vy) by its covariance.
    control: [B, A, N, T, 2] standard normal, the control noise at each step.
    shared: [B, A, N, 2] standard normal, the pedestrians' drift noise (one draw per path).
    """

    mode: Tensor
    kind: Tensor
    start: Tensor
    control: Tensor
    shared: Tensor

    @classmethod
    def draw(cls, batch: int, agents: int, samples: int, horizon: int, generator: torch.Generator,
             dtype: torch.dtype = torch.float32) -> SampleNoise:  # fmt: skip
        shape = (batch, agents, samples)
        kw = {"generator": generator, "dtype": dtype}
        return cls(
            mode=_stratified(batch, agents, samples, generator, dtype),
            kind=torch.rand(shape, **kw),
            start=torch.randn(*shape, 4, **kw),
            control=torch.randn(*shape, horizon, 2, **kw),
            shared=torch.randn(*shape, 2, **kw),
        )

    def to(self, device: torch.device | str) -> SampleNoise:
        return SampleNoise(*(t.to(device) for t in (self.mode, self.kind, self.start, self.control, self.shared)))


def _stratified(batch: int, agents: int, samples: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """[B, A, N] systematic uniform draws (one per N-th of [0, 1), one offset per agent), shuffled per agent so
    sample n is not tied to the n-th stratum."""
    strata = torch.arange(samples, dtype=dtype) + torch.rand(batch, agents, 1, generator=generator, dtype=dtype)
    order = torch.rand(batch, agents, samples, generator=generator).argsort(dim=-1)
    return (strata / samples).gather(-1, order)


def _pick(controls: ControlGaussian, z: Tensor, noise: Tensor, shared: Tensor | None = None) -> Tensor:
    """Controls `[B, A, N, T, 2]` of latent values `z [B, A, N]`: mean + chol @ noise (+ shared_chol @ shared,
    the drift, with `shared [B, A, N, 2]` the same at every step)."""
    T = controls.mean.shape[-2]
    index = z[..., None, None, None].expand(*z.shape, T, 2, 2)
    mean = controls.mean.gather(2, z[..., None, None].expand(*z.shape, T, 2))
    out = mean + (controls.chol.gather(2, index) @ noise[..., None]).squeeze(-1)
    if controls.shared_chol is not None and shared is not None:
        drift = controls.shared_chol.gather(2, index) @ shared[:, :, :, None, :, None]
        out = out + drift.squeeze(-1)
    return out


def _per_mode(t: Tensor, modes: int) -> Tensor:
    """`[B, A, ...]` -> `[B, A, K, ...]` (a view repeated over the K latent values)."""
    return t.unsqueeze(2).expand(*t.shape[:2], modes, *t.shape[2:])


def dynamics_chol4(cov: Tensor) -> Tensor:
    """A square root `[..., 4, 4]` of the state covariance: block-diagonal 2x2 Cholesky factors of the
    position and velocity blocks (their cross-covariance is ignored when sampling the start)."""
    out = torch.zeros_like(cov)
    out[..., :2, :2] = dynamics.cholesky_2x2(cov[..., :2, :2])
    out[..., 2:, 2:] = dynamics.cholesky_2x2(cov[..., 2:, 2:])
    return out
