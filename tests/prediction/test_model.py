"""The predictor: causality, equivariance, masking, the mixture it outputs and its ELBO."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.distributions import MultivariateNormal

from perception.losses import gaussian_nll
from prediction.config import PredictorConfig
from prediction.inputs import backward_velocity, tracks_from_positions
from prediction.model import Predictor, SampleNoise
from prediction.windows import HISTORY, TrajectoryWindows
from tests.prediction.conftest import walking_windows

CFG = PredictorConfig.tiny(interaction_radius=10.0)


def model(cfg: PredictorConfig = CFG, seed: int = 0) -> Predictor:
    torch.manual_seed(seed)
    return Predictor(cfg).eval()


def tracks_of(windows: TrajectoryWindows):
    obs_xy, obs_present = windows.observed()
    return tracks_from_positions(obs_xy, obs_present, windows.dt, windows.class_probs, windows.size)


def with_xy(windows: TrajectoryWindows, xy: torch.Tensor) -> TrajectoryWindows:
    return dataclasses.replace(windows, xy=xy)


def test_forecast_validates_and_carries_existence_and_classes(walkers):
    tracks = tracks_of(walkers)
    forecast = model()(tracks).validate()
    assert forecast.means.shape == (3, 5, CFG.latent, CFG.horizon, 2)
    assert torch.equal(forecast.valid, tracks.valid)
    assert torch.equal(forecast.existence, tracks.existence)
    assert torch.equal(forecast.class_probs, tracks.class_probs)


def test_inputs_never_read_the_future(walkers):
    """Changing every future position leaves the tracks, the forecast and the samples unchanged,
    while changing the last observed position changes them (so the check can fail)."""
    net = model()
    noise = SampleNoise.draw(3, 5, 4, CFG.horizon, torch.Generator().manual_seed(1))
    base_tracks = tracks_of(walkers)
    base, base_samples = net(base_tracks), net.sample_positions(base_tracks, noise)
    future_changed = walkers.xy.clone()
    future_changed[:, :, HISTORY:] += 5.0
    tracks = tracks_of(with_xy(walkers, future_changed))
    assert torch.equal(tracks.state, base_tracks.state)
    assert torch.equal(net(tracks).means, base.means)
    assert torch.equal(net.sample_positions(tracks, noise), base_samples)
    present_changed = walkers.xy.clone()
    present_changed[:, :, HISTORY - 1] += 0.5
    assert not torch.allclose(net(tracks_of(with_xy(walkers, present_changed))).means, base.means)


def test_velocities_are_backward_differences_not_central():
    """The velocity at the last observed step is (x_now - x_prev) / dt: a central difference (Trajectron++'s
    `np.gradient`) would have read the first future position."""
    xy = torch.tensor([[[[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]]]])  # accelerating along x, dt 0.5
    present = torch.ones(1, 1, 3, dtype=torch.bool)
    velocity, known = backward_velocity(xy, present, dt=0.5)
    assert torch.allclose(velocity[0, 0, :, 0], torch.tensor([0.0, 2.0, 4.0]))
    assert known.tolist() == [[[False, True, True]]]


def test_permuting_agents_permutes_outputs(walkers):
    net = model()
    perm = torch.tensor([3, 0, 4, 2, 1])
    permuted = TrajectoryWindows(
        walkers.xy[:, perm], walkers.present[:, perm], walkers.class_probs[:, perm], walkers.size[:, perm],
        walkers.valid[:, perm], walkers.lanes, walkers.lanes_valid,
    )  # fmt: skip
    a, b = net(tracks_of(walkers)), net(tracks_of(permuted))
    valid = walkers.valid[:, perm]
    assert torch.allclose(a.means[:, perm][valid], b.means[valid], atol=1e-5)
    assert torch.allclose(a.log_weights[:, perm][valid], b.log_weights[valid], atol=1e-5)


def test_masked_and_distant_agents_have_no_influence(walkers):
    """Garbage in an empty slot, and a neighbour moved beyond the interaction radius, change nothing."""
    net = model()
    base = net(tracks_of(walkers))
    garbage = walkers.xy.clone()
    garbage[:, -1] = torch.randn_like(garbage[:, -1]) * 1e3  # slot 4 is empty (valid False)
    changed = net(tracks_of(with_xy(walkers, garbage)))
    keep = walkers.valid
    assert torch.equal(changed.means[keep], base.means[keep])
    # Agent 0 alone within the radius of nobody: moving agent 2 far away and then farther changes nothing for 0.
    far, farther = walkers.xy.clone(), walkers.xy.clone()
    far[:, 2] += 100.0
    farther[:, 2] += 200.0
    a, b = net(tracks_of(with_xy(walkers, far))), net(tracks_of(with_xy(walkers, farther)))
    others = torch.tensor([0, 1, 3])
    assert torch.allclose(a.means[:, others], b.means[:, others], atol=1e-5)


def test_gaussian_nll_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, y = torch.randn(7, 2, generator=g), torch.randn(7, 2, generator=g)
    root = torch.randn(7, 2, 2, generator=g)
    cov = root @ root.transpose(-1, -2) + 0.1 * torch.eye(2)
    expected = MultivariateNormal(mean, covariance_matrix=cov).log_prob(y)
    assert torch.allclose(-gaussian_nll(y, mean, cov), expected, atol=1e-5)


def test_forecast_marginals_match_the_path_model_for_pedestrians(walkers):
    """Each step of the Forecast is the marginal of the path model: a Monte Carlo of sampled paths
    (z from the prior, per-step noise and drift) has the forecast mixture's per-step mean."""
    net = model()
    tracks = tracks_of(walkers)
    forecast = net(tracks)
    noise = SampleNoise.draw(3, 5, 4000, CFG.horizon, torch.Generator().manual_seed(5))
    paths = net.sample_positions(tracks, noise)  # [S, A, N, T, 2]
    mean = (forecast.weights[..., None, None] * forecast.means).sum(dim=2)
    valid = walkers.valid
    standard_error = paths.std(dim=2) / paths.shape[2] ** 0.5
    assert bool(((paths.mean(dim=2) - mean).abs() < 5 * standard_error)[valid].all())


def test_elbo_is_a_lower_bound_and_kl_is_positive(walkers):
    terms = model().elbo(tracks_of(walkers), *walkers.future())
    elbo = terms["reconstruction"] - terms["kl"]
    trained = terms["trained"]
    assert bool((terms["kl"][trained] >= -1e-5).all())
    assert bool((elbo[trained] <= terms["log_likelihood"][trained] + 1e-3).all())


def test_the_winner_is_the_mode_whose_mean_path_is_closest_to_the_truth(walkers):
    net = model()
    tracks = tracks_of(walkers)
    future, present = walkers.future()
    terms = net.winner_takes_all(tracks, future, present)
    means = net(tracks).means  # [S, A, K, T, 2]
    expected = (means - future[:, :, None]).norm(dim=-1).sum(dim=-1).argmin(dim=-1)
    full = terms["trained"] & present.all(dim=-1)  # agents scored on every step
    assert bool(full.any()) and torch.equal(terms["winner"][full], expected[full])
    assert bool((terms["winner"][~terms["trained"]] == -1).all())
    assert bool((terms["classification"][terms["trained"]] >= 0).all())


@pytest.mark.parametrize("relax", [0.0, 0.05])
def test_only_the_winning_modes_learn_from_the_truth_unless_relaxed(walkers, relax):
    """With no relaxation a mode no agent chose gets no gradient from the reconstruction (it is free to
    specialise elsewhere); with relaxation every mode does (none is left untrained)."""
    net = model()
    terms = net.winner_takes_all(tracks_of(walkers), *walkers.future(), relax=relax)
    terms["reconstruction"][terms["trained"]].sum().backward()
    per_mode = net.decoder.latent.weight.grad.abs().sum(dim=-1)  # [K]
    chosen = torch.zeros(CFG.latent, dtype=torch.bool)
    chosen[terms["winner"][terms["trained"]]] = True
    assert bool((per_mode[chosen] > 0).all())
    assert not bool(chosen.all())  # the test needs a mode nobody chose
    if relax == 0.0:
        assert bool((per_mode[~chosen] == 0).all())
    else:
        assert bool((per_mode[~chosen] > 0).all())


def test_latent_draws_are_stratified_so_n_samples_visit_the_modes_by_weight(walkers):
    noise = SampleNoise.draw(2, 3, 10, CFG.horizon, torch.Generator().manual_seed(0))
    stratum = (noise.mode * 10).floor()
    assert torch.equal(stratum.sort(dim=-1).values, torch.arange(10.0).expand(2, 3, 10))  # one in each tenth
    assert not torch.equal(stratum[0, 0], stratum[0, 1])  # in a random order per agent
    # So a mode of weight w gets floor(N w) or ceil(N w) of the N samples, never none when N w >= 1.
    net = model()
    tracks = tracks_of(walkers)
    weights = net(tracks).weights  # [S, A, K]
    z = (weights.cumsum(-1).unsqueeze(-2) <= noise_for(walkers, 40).mode.unsqueeze(-1)).sum(-1)
    counts = torch.nn.functional.one_hot(z.clamp(max=CFG.latent - 1), CFG.latent).sum(dim=-2).float()
    valid = walkers.valid
    assert bool(((counts - 40 * weights).abs() <= 1.0 + 1e-4)[valid].all())


def noise_for(windows: TrajectoryWindows, samples: int) -> SampleNoise:
    S, A = windows.valid.shape
    return SampleNoise.draw(S, A, samples, CFG.horizon, torch.Generator().manual_seed(1))


def test_samples_are_smooth_paths_from_the_noise(walkers):
    net = model()
    tracks = tracks_of(walkers)
    noise = SampleNoise.draw(3, 5, 6, CFG.horizon, torch.Generator().manual_seed(0))
    a, b = net.sample_positions(tracks, noise), net.sample_positions(tracks, noise)
    assert a.shape == (3, 5, 6, CFG.horizon, 2) and torch.equal(a, b)
    quiet = SampleNoise(
        noise.mode, noise.kind, torch.zeros_like(noise.start), torch.zeros_like(noise.control),
        torch.zeros_like(noise.shared),
    )  # fmt: skip
    mean_paths = net.sample_positions(tracks, quiet)
    forecast = net(tracks)
    # With zero Gaussian noise a pedestrian sample is exactly the mean of its latent value.
    z = (forecast.weights.cumsum(-1).unsqueeze(-2) <= quiet.mode.unsqueeze(-1)).sum(-1).clamp(max=CFG.latent - 1)
    picked = forecast.means.gather(2, z[..., None, None].expand(-1, -1, -1, CFG.horizon, 2))
    valid = walkers.valid
    assert torch.allclose(mean_paths[valid], picked[valid], atol=1e-4)


@pytest.mark.parametrize("vehicle_share", [0.0, 0.5, 1.0])
def test_uncertain_class_blends_both_dynamics(vehicle_share):
    windows = walking_windows(pedestrians=False)
    probs = torch.zeros_like(windows.class_probs)
    probs[..., 0], probs[..., 1] = vehicle_share, 1 - vehicle_share
    forecast = model()(tracks_of(dataclasses.replace(windows, class_probs=probs))).validate()
    assert bool(torch.isfinite(forecast.means).all())


def test_map_encoder_reads_the_patch_around_each_agent():
    from prediction.encoders import MapEncoder
    from sim.config import RasterConfig

    cfg = PredictorConfig.tiny(map_channels=1, map_patch=5, map_patch_m=5.0)
    raster = RasterConfig(size=32, resolution=1.0, ego_row_fraction=0.5)
    image = torch.zeros(1, 1, 32, 32)
    image[0, 0, 16 - 6, 16 + 2] = 1.0  # the cell centred 5.5 m ahead and 2.5 m right of the ego (x ahead, y left)
    encoder = MapEncoder(cfg)
    at = torch.tensor([[[5.5, -2.5], [-8.0, 8.0]]])  # agent 0 on the bright cell, agent 1 far from it
    patches = encoder.patches(image, raster, at)
    assert patches.shape == (1, 2, 1, 5, 5)
    assert float(patches[0, 0, 0, 2, 2]) == pytest.approx(1.0)  # the patch centre samples that cell's centre
    assert float(patches[0, 0].sum()) == pytest.approx(1.0) and float(patches[0, 1].max()) == 0.0
    assert encoder(image, raster, at).shape == (1, 2, cfg.hidden)


def test_map_model_requires_a_map(walkers):
    with pytest.raises(ValueError, match="map_input"):
        model(PredictorConfig.tiny(map_channels=2))(tracks_of(walkers))


@pytest.mark.parametrize("vehicle_dynamics", [False, True])
def test_forecast_exports_to_onnx_with_dynamic_scene_and_agent_axes(vehicle_dynamics):
    """The deterministic forecast (all K latent values, no sampling) runs in onnxruntime and matches torch
    on a different number of scenes and agents than it was exported with."""
    import io
    import warnings

    from perception.types import Tracks
    from prediction.types import Forecast

    net = model(PredictorConfig.tiny(interaction_radius=10.0, vehicle_dynamics=vehicle_dynamics))

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
            tracks = Tracks.from_flat(dict(zip(Tracks.flat_names(), flat, strict=True)))
            return tuple(self.net(tracks).to_flat().values())

    def flat(windows: TrajectoryWindows) -> tuple[torch.Tensor, ...]:
        return tuple(tracks_of(windows).to_flat().values())

    buffer, names = io.BytesIO(), Tracks.flat_names()
    axes = {name: {0: "S", 1: "A"} for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Graph(), flat(walking_windows()), buffer, input_names=names, dynamo=False,
                          output_names=Forecast.flat_names(), dynamic_axes=axes, opset_version=17)  # fmt: skip
    import onnxruntime as ort  # only the export tests need it

    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    other = flat(walking_windows(windows=2, agents=7, seed=4))
    got = session.run(None, {name: value.numpy() for name, value in zip(names, other, strict=True)})
    with torch.no_grad():
        want = Graph()(*other)
    for name, a, b in zip(Forecast.flat_names(), got, want, strict=True):
        torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-4, rtol=1e-4, msg=name)
