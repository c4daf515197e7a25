"""Targets and the supervised loss: who becomes a target, exact NLLs, labeled masks, overfitting."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from core.config import ConfigError
from perception.config import DetectorConfig
from perception.decode import cell_centres, decode
from perception.detector import Detector
from perception.losses import LossConfig, gaussian_nll, make_targets, supervised_loss, von_mises_nll
from sim.types import ObjectList

CFG = DetectorConfig.tiny()  # 32 x 32 cells of 1 m, stride 4: an 8 x 8 grid of 4 m cells
RASTER, STRIDE, G = CFG.raster, CFG.stride, CFG.grid_size


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny convolutions on a shared 2-core machine: OpenMP threads only contend.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _objects(xy: Tensor, visible: Tensor | None = None, valid: Tensor | None = None, kind: Tensor | None = None):
    """ObjectList of centres `xy [B, M, 2]`, 4 x 2 m boxes heading along x at 3 m/s."""
    B, M, _ = xy.shape
    ones = torch.ones(B, M, dtype=torch.bool)
    return ObjectList(
        xy=xy,
        yaw=torch.full((B, M), 0.2),
        velocity=torch.tensor([3.0, 0.5]).expand(B, M, 2),
        length=torch.full((B, M), 4.0),
        width=torch.full((B, M), 2.0),
        kind=kind if kind is not None else torch.zeros(B, M, dtype=torch.long),
        score=torch.ones(B, M),
        visible=visible if visible is not None else ones,
        agent_id=torch.arange(M).expand(B, M),
        valid=valid if valid is not None else ones,
    ).validate()


def _grid_objects(count: int, seed: int) -> ObjectList:
    """`count` objects in distinct grid cells, jittered inside them, one frame."""
    gen = torch.Generator().manual_seed(seed)
    cells = torch.randperm(G * G, generator=gen)[:count]
    centres = cell_centres(G, RASTER, STRIDE, torch.float32, torch.device("cpu"))[cells]
    xy = centres + (torch.rand(count, 2, generator=gen) - 0.5) * 3.0
    kind = torch.randint(0, 3, (1, count), generator=gen)
    return _objects(xy.unsqueeze(0), kind=kind)


def test_targets_keep_visible_valid_objects_inside_the_raster_and_the_nearest_per_cell():
    centre = cell_centres(G, RASTER, STRIDE, torch.float32, torch.device("cpu"))[9]  # grid row 1, column 1
    xy = torch.stack(
        (
            centre + torch.tensor([1.2, 0.0]),  # shares cell 9, farther from its centre
            centre + torch.tensor([0.3, -0.2]),  # nearest in cell 9: the target
            torch.tensor([0.0, 0.0]),  # the ego's cell, but not visible
            torch.tensor([0.0, 4.0]),  # invalid slot
            torch.tensor([200.0, 0.0]),  # outside the raster
            torch.tensor([-5.0, -6.0]),  # a lone visible object
        )
    ).unsqueeze(0)
    visible = torch.tensor([[True, True, False, True, True, True]])
    valid = torch.tensor([[True, True, True, False, True, True]])
    targets = make_targets(_objects(xy, visible, valid), RASTER, STRIDE).validate()
    assert targets.mask.tolist() == [[False, True, False, False, False, True]]
    assert targets.cell[0, 1] == 9
    assert int((targets.heatmap >= 1.0).sum()) == 2  # two centre cells; the shared one counts once
    assert targets.heatmap[0, 1, 1] == 1.0 and 0 < targets.heatmap[0, 1, 2] < 1


def test_no_objects_and_more_objects_than_slots():
    empty = _objects(torch.zeros(1, 0, 2))
    targets = make_targets(empty, RASTER, STRIDE).validate()
    assert targets.heatmap.abs().sum() == 0 and targets.mask.shape == (1, 0)
    invalid = _objects(torch.zeros(1, 3, 2), valid=torch.zeros(1, 3, dtype=torch.bool))
    out = Detector(CFG)(torch.rand(1, CFG.in_channels, 32, 32))
    for labels in (empty, invalid):
        loss, parts = supervised_loss(out, make_targets(labels, RASTER, STRIDE), RASTER, STRIDE)
        assert torch.isfinite(loss) and parts["existence"] > 0 and parts["position"] == 0
    many = make_targets(_grid_objects(40, seed=1), RASTER, STRIDE).validate()
    assert int(many.mask.sum()) == 40 and int((many.heatmap >= 1.0).sum()) == 40
    loss, _ = supervised_loss(out, many, RASTER, STRIDE)
    assert torch.isfinite(loss)
    decode(out, RASTER, STRIDE, 32).validate()


def test_gaussian_and_von_mises_nll_match_torch_distributions():
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(5, 2, 2, generator=gen)
    cov = a @ a.transpose(-1, -2) + 0.1 * torch.eye(2)
    mean, value = torch.randn(5, 2, generator=gen), torch.randn(5, 2, generator=gen)
    expected = -torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(value)
    torch.testing.assert_close(gaussian_nll(value, mean, cov), expected, rtol=1e-4, atol=1e-5)
    loc = torch.rand(5, generator=gen) * 6 - 3
    kappa = torch.tensor([0.01, 0.5, 3.0, 40.0, 300.0])
    angle = torch.rand(5, generator=gen) * 6 - 3
    expected = -torch.distributions.VonMises(loc.double(), kappa.double()).log_prob(angle.double())
    torch.testing.assert_close(von_mises_nll(angle, loc, kappa).double(), expected, rtol=1e-4, atol=1e-4)


def test_unlabeled_frames_contribute_nothing():
    torch.manual_seed(0)
    det = Detector(CFG)
    x = torch.rand(2, CFG.in_channels, 32, 32)
    labels = ObjectList(
        **{k: torch.cat([getattr(_grid_objects(5, s), k) for s in (3, 4)]) for k in ObjectList.field_names()}
    )
    targets = make_targets(labels, RASTER, STRIDE)
    out = det(x)
    mixed, mixed_parts = supervised_loss(out, targets, RASTER, STRIDE, labeled=torch.tensor([True, False]))
    alone, alone_parts = supervised_loss(out.index(0), targets.index(0), RASTER, STRIDE)
    torch.testing.assert_close(mixed, alone)
    none, _ = supervised_loss(out, targets, RASTER, STRIDE, labeled=torch.zeros(2, dtype=torch.bool))
    assert none == 0
    with pytest.raises(ValueError, match="labeled"):
        supervised_loss(out, targets, RASTER, STRIDE, labeled=torch.ones(3, dtype=torch.bool))


def test_overfitting_a_tiny_batch_lowers_every_term():
    torch.manual_seed(0)
    det = Detector(CFG)
    x = torch.rand(2, CFG.in_channels, 32, 32)
    labels = ObjectList(
        **{k: torch.cat([getattr(_grid_objects(6, s), k) for s in (5, 6)]) for k in ObjectList.field_names()}
    )
    targets = make_targets(labels, RASTER, STRIDE)
    optimiser = torch.optim.Adam(det.parameters(), lr=1e-2)
    history = []
    for _ in range(30):
        loss, parts = supervised_loss(det(x), targets, RASTER, STRIDE)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(parts)
    first, last = history[0], history[-1]
    assert last["total"] < 0.5 * first["total"]
    for name in ("existence", "class", "position", "velocity", "heading", "size"):
        assert last[name] < first[name], name


def test_loss_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="LossConfig.focal_beta"):
        LossConfig(focal_beta=-1.0)
    with pytest.raises(ConfigError, match="LossConfig.min_sigma"):
        LossConfig(min_sigma=5.0, max_sigma=1.0)
    assert math.isclose(LossConfig().focal_alpha, 2.0)
