"""Self-supervised objectives: analysis by synthesis, temporal contrast, augmentations, next-frame prediction."""

from __future__ import annotations

import math

import pytest
import torch

from core.config import ConfigError
from perception.selfsup import (
    AnalysisBySynthesisLoss,
    AugmentConfig,
    NextFrameHead,
    ProjectionHead,
    augment_bev,
    balanced_bce,
    multiview_contrastive_loss,
    next_frame_loss,
    rotate_about_ego,
    temporal_contrastive_loss,
)
from sim.config import RasterConfig
from sim.sensors.raster import ego_xy_to_cell, render_bev
from sim.sensors.scan import scan
from sim.sensors.scene import EgoObjects


def sensed_bev(xy: list[list[float]], yaw: list[float], size: list[list[float]], raster: RasterConfig) -> torch.Tensor:
    """[1, 2, H, W] the simulator's lidar-like BEV of boxes (centre xy, yaw, (length, width)) around the ego."""
    d = torch.float64
    M = len(xy)
    dims = torch.tensor([size], dtype=d)
    present = torch.ones(1, M, dtype=torch.bool)
    objects = EgoObjects(
        xy=torch.tensor([xy], dtype=d),
        yaw=torch.tensor([yaw], dtype=d),
        velocity=torch.zeros(1, M, 2, dtype=d),
        length=dims[..., 0],
        width=dims[..., 1],
        height=torch.full((1, M), 1.5, dtype=d),
        kind=torch.zeros(1, M, dtype=torch.long),
        present=present,
        drawn=present,
    )
    return render_bev(scan(objects, torch.tensor([50.0]), raster), None, raster)


def test_analysis_by_synthesis_pulls_candidates_onto_the_observed_boxes():
    raster = RasterConfig(size=48, resolution=0.5)
    truth = torch.tensor([[[7.0, 2.5], [9.0, -4.0], [4.0, -1.5]]])
    yaw = [0.3, 1.2, -0.4]
    size = [[4.6, 1.9], [1.8, 0.7], [0.5, 0.6]]
    bev = sensed_bev(truth[0].tolist(), yaw, size, raster)
    loss_fn = AnalysisBySynthesisLoss(raster)
    offset = torch.tensor([[[0.8, -0.8], [-0.7, 0.7], [0.5, 0.5]]])
    position = (truth + offset).requires_grad_(True)
    existence = torch.full((1, 3), 0.9)
    cov = torch.eye(2).expand(1, 3, 2, 2) * 0.02
    sizes, heading = torch.tensor([size]), torch.tensor([yaw])
    optimiser = torch.optim.Adam([position], lr=0.05)
    first = None
    for _ in range(60):
        loss = loss_fn(existence, position, cov, sizes, heading, bev)
        first = float(loss.detach()) if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        final = float(loss_fn(existence, position, cov, sizes, heading, bev))
    end_error = float((position.detach() - truth).norm(dim=-1).mean())
    assert final < 0.75 * first  # measured: 1.43 -> 0.82
    assert end_error < 0.4 * float(offset.norm(dim=-1).mean())  # measured: 0.94 m -> 0.27 m


def test_analysis_by_synthesis_prefers_the_observed_box_to_an_empty_scene():
    raster = RasterConfig(size=32, resolution=0.5)
    bev = sensed_bev([[5.0, 1.0]], [0.0], [[4.6, 1.9]], raster)
    loss_fn = AnalysisBySynthesisLoss(raster)
    args = (torch.tensor([[[5.0, 1.0]]]), torch.eye(2).expand(1, 1, 2, 2) * 0.02, torch.tensor([[[4.6, 1.9]]]))
    present = loss_fn(torch.full((1, 1), 0.95), *args, torch.zeros(1, 1), bev)
    absent = loss_fn(torch.zeros(1, 1), *args, torch.zeros(1, 1), bev)
    assert float(present) < 0.5 * float(absent)


def test_balanced_bce_is_minimised_at_the_soft_target():
    target = torch.tensor([[[0.0, 0.5, 1.0, 0.3], [0.0, 0.0, 0.0, 0.0]]])
    logits = torch.logit(target.clamp(1e-4, 1 - 1e-4)).requires_grad_(True)
    loss = balanced_bce(
        torch.nn.functional.logsigmoid(logits), torch.nn.functional.logsigmoid(-logits), target, torch.ones(1)
    )
    loss.backward()
    # Cells at exactly 0 or 1 sit at the clamp, whose gradient is tiny; soft cells have none.
    assert float(logits.grad.abs().max()) < 1e-3


def test_contrastive_loss_is_log_b_for_identical_embeddings():
    for B, V in ((4, 2), (8, 2), (5, 3)):
        views = torch.ones(B, V, 6)
        assert float(multiview_contrastive_loss(views, temperature=0.2)) == pytest.approx(math.log(B), abs=1e-5)
    assert float(temporal_contrastive_loss(torch.ones(7, 3), torch.ones(7, 3))) == pytest.approx(math.log(7))


def test_contrastive_loss_is_lower_for_aligned_pairs_than_for_shuffled_ones():
    g = torch.Generator().manual_seed(0)
    z_t = torch.randn(16, 32, generator=g)
    z_tp = z_t + 0.1 * torch.randn(16, 32, generator=g)
    aligned = temporal_contrastive_loss(z_t, z_tp, temperature=0.1)
    shuffled = temporal_contrastive_loss(z_t, z_tp[torch.randperm(16, generator=g)], temperature=0.1)
    assert float(aligned) < 0.1 < math.log(16) < float(shuffled)


def test_same_episode_samples_are_not_negatives():
    # Episodes [0, 0, 1, 2]: anchors 0 and 1 see 3 candidates, anchors 2 and 3 see 4.
    episode = torch.tensor([0, 0, 1, 2])
    loss = temporal_contrastive_loss(torch.ones(4, 5), torch.ones(4, 5), episode=episode)
    assert float(loss) == pytest.approx(0.5 * (math.log(3) + math.log(4)), abs=1e-5)


def test_contrastive_gradients_reach_both_inputs_through_the_projection_head():
    g = torch.Generator().manual_seed(1)
    head = ProjectionHead(12, 8)
    z_t = torch.randn(6, 12, generator=g, requires_grad=True)
    z_tp = torch.randn(6, 12, generator=g, requires_grad=True)
    temporal_contrastive_loss(head(z_t), head(z_tp)).backward()
    assert float(z_t.grad.abs().sum()) > 0 and float(z_tp.grad.abs().sum()) > 0
    assert all(p.grad is not None for p in head.parameters())


def test_contrastive_rejects_bad_inputs():
    with pytest.raises(ValueError, match="^temperature:"):
        temporal_contrastive_loss(torch.ones(2, 3), torch.ones(2, 3), temperature=0.0)
    with pytest.raises(ValueError, match="^z_t, z_tp:"):
        temporal_contrastive_loss(torch.ones(2, 3), torch.ones(3, 3))
    with pytest.raises(ValueError, match="^episode:"):
        temporal_contrastive_loss(torch.ones(2, 3), torch.ones(2, 3), episode=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="ProjectionHead.out_dim"):
        ProjectionHead(4, 0)


def scattered_returns(raster: RasterConfig, count: int, seed: int) -> torch.Tensor:
    """[2, 2, H, W] BEVs with `count` returns each within 8 m of the ego."""
    g = torch.Generator().manual_seed(seed)
    bev = torch.zeros(2, 2, raster.size, raster.size)
    xy = (torch.rand(2, count, 2, generator=g) * 2.0 - 1.0) * 8.0
    row, col, inside = ego_xy_to_cell(xy, raster)
    assert bool(inside.all())
    for b in range(2):
        bev[b, 0, row[b], col[b]] = 1.0
        bev[b, 1, row[b], col[b]] = 1.7
    return bev


def test_augmentations_are_deterministic_given_the_seed():
    raster = RasterConfig(size=64, resolution=0.5)
    bev = scattered_returns(raster, 200, seed=2)
    torch.testing.assert_close(augment_bev(bev, 7, raster=raster), augment_bev(bev, 7, raster=raster))
    assert not torch.equal(augment_bev(bev, 7, raster=raster), augment_bev(bev, 8, raster=raster))


def test_augmentations_preserve_occupancy_counts_approximately():
    raster = RasterConfig(size=64, resolution=0.5)
    bev = scattered_returns(raster, 200, seed=3)
    before = bev[:, 0].sum((-2, -1))
    turned = augment_bev(bev, 11, AugmentConfig(max_rotation_rad=math.pi, point_dropout=0.0), raster)
    ratio = turned[:, 0].sum((-2, -1)) / before
    assert bool(((ratio > 0.85) & (ratio < 1.15)).all())
    assert bool(torch.isin(turned[:, 1].unique(), torch.tensor([0.0, 1.7])).all())  # heights resampled, not blended
    thinned = augment_bev(bev, 11, AugmentConfig(max_rotation_rad=0.0, point_dropout=0.3), raster)
    ratio = thinned[:, 0].sum((-2, -1)) / before
    assert bool(((ratio > 0.55) & (ratio < 0.85)).all())


def test_rotation_turns_about_the_ego_counter_clockwise():
    raster = RasterConfig(size=32, resolution=0.5)
    bev = torch.zeros(1, 2, 32, 32)
    row, col, _ = ego_xy_to_cell(torch.tensor([3.95, 0.25]), raster)  # the cell centred 3.95 m ahead, 0.25 m left
    bev[0, 0, row, col] = 1.0
    turned = rotate_about_ego(bev, torch.tensor([math.pi / 2]), raster)
    row, col, _ = ego_xy_to_cell(torch.tensor([-0.25, 3.95]), raster)  # turned a quarter left
    assert float(turned[0, 0, row, col]) == 1.0 and float(turned.sum()) == 1.0
    torch.testing.assert_close(rotate_about_ego(bev, torch.zeros(1), raster), bev)


def test_dropout_spares_channels_past_sensor_channels():
    raster = RasterConfig(size=16, resolution=0.5)
    x = torch.ones(1, 5, 16, 16)
    view = augment_bev(x, 3, AugmentConfig(max_rotation_rad=0.0, point_dropout=0.5), raster, sensor_channels=2)
    assert float(view[:, :2].mean()) < 0.7 and bool((view[:, 2:] == 1).all())
    with pytest.raises(ValueError, match="^seed:"):
        augment_bev(x, -1, raster=raster)
    with pytest.raises(ConfigError, match="AugmentConfig.point_dropout"):
        AugmentConfig(point_dropout=1.0)


def test_next_frame_head_shapes_and_overfits_a_tiny_batch():
    torch.manual_seed(0)
    raster = RasterConfig(size=16, resolution=0.5)
    head = NextFrameHead(in_channels=8, raster=raster, hidden=16)
    g = torch.Generator().manual_seed(4)
    features = torch.randn(2, 8, 4, 4, generator=g)
    next_bev = torch.zeros(2, 2, 16, 16)
    next_bev[:, 0] = (torch.rand(2, 16, 16, generator=g) < 0.1).float()
    logits = head(features)
    assert logits.shape == (2, 16, 16)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = float(next_frame_loss(logits, next_bev).detach())
    for _ in range(80):
        loss = next_frame_loss(head(features), next_bev)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(next_frame_loss(head(features), next_bev).detach()) < 0.3 * first


def test_next_frame_rejects_bad_shapes():
    raster = RasterConfig(size=16, resolution=0.5)
    head = NextFrameHead(in_channels=8, raster=raster)
    with pytest.raises(ValueError, match=r"^features: expected shape \[B, 8, 4, 4\]"):
        head(torch.zeros(1, 8, 8, 8))
    with pytest.raises(ValueError, match="^next_bev:"):
        next_frame_loss(torch.zeros(1, 16, 16), torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="NextFrameHead.stride"):
        NextFrameHead(in_channels=8, raster=RasterConfig(size=18), stride=4)


def test_analysis_by_synthesis_rejects_bad_settings():
    with pytest.raises(ConfigError, match="AnalysisBySynthesisLoss.background"):
        AnalysisBySynthesisLoss(background=0.0)
    with pytest.raises(ConfigError, match="AnalysisBySynthesisLoss.positive_share"):
        AnalysisBySynthesisLoss(positive_share=1.0)
