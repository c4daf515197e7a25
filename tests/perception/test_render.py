"""Expected-occupancy rendering and the observed target: closed form vs Monte Carlo, gradients, limits."""

from __future__ import annotations

import math

import pytest
import torch

from core.config import ConfigError
from perception.render import (
    RenderConfig,
    TargetConfig,
    depth_behind_surface,
    expected_occupancy,
    log_free_probability,
    observe,
    observed_target,
)
from sim.config import RasterConfig
from sim.sensors.raster import cell_centres, ego_xy_to_cell

SMALL = RasterConfig(size=24, resolution=0.5)
WIDE = RenderConfig(window_cells=24)


def one_object(x: float, y: float, cov: list[list[float]], length: float, width: float, heading: float):
    """Tensors for B = 1, M = 1 in float64."""
    d = torch.float64
    return (
        torch.ones(1, 1, dtype=d),
        torch.tensor([[[x, y]]], dtype=d),
        torch.tensor([[cov]], dtype=d),
        torch.tensor([[[length, width]]], dtype=d),
        torch.tensor([[heading]], dtype=d),
    )


def monte_carlo_cover(args, raster: RasterConfig, samples: int, seed: int, min_std: float) -> torch.Tensor:
    """[H, W] fraction of centres drawn from N(mean, cov + min_std^2 I) whose box covers each cell centre."""
    _, position, cov, size, heading = args
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(cov[0, 0] + min_std**2 * torch.eye(2, dtype=torch.float64))
    centres = position[0, 0] + torch.randn(samples, 2, generator=g, dtype=torch.float64) @ chol.T  # (N, 2)
    ahead, left = cell_centres(raster, torch.float64, torch.device("cpu"))
    cells = torch.stack(torch.meshgrid(ahead, left, indexing="ij"), dim=-1).reshape(-1, 2)  # (HW, 2)
    offset = cells[None] - centres[:, None]  # (N, HW, 2)
    c, s = math.cos(float(heading)), math.sin(float(heading))
    u = offset[..., 0] * c + offset[..., 1] * s
    v = offset[..., 1] * c - offset[..., 0] * s
    inside = (u.abs() <= 0.5 * float(size[0, 0, 0])) & (v.abs() <= 0.5 * float(size[0, 0, 1]))
    return inside.double().mean(0).reshape(raster.size, raster.size)


@pytest.mark.parametrize(
    ("cov", "heading"),
    [
        ([[0.3, 0.0], [0.0, 0.3]], 0.7),  # isotropic
        # std 0.8 m along a heading of 0.5 rad and 0.3 m across it: diagonal in the box frame.
        (
            [
                [0.64 * math.cos(0.5) ** 2 + 0.09 * math.sin(0.5) ** 2, (0.64 - 0.09) * math.cos(0.5) * math.sin(0.5)],
                [(0.64 - 0.09) * math.cos(0.5) * math.sin(0.5), 0.64 * math.sin(0.5) ** 2 + 0.09 * math.cos(0.5) ** 2],
            ],
            0.5,
        ),
    ],
)
def test_closed_form_matches_monte_carlo_when_cov_is_diagonal_in_the_box_frame(cov, heading):
    args = one_object(2.3, -0.6, cov, 4.6, 1.9, heading)
    closed = expected_occupancy(*args, raster=SMALL, config=WIDE)[0]
    mc = monte_carlo_cover(args, SMALL, samples=40_000, seed=0, min_std=WIDE.min_std_m)
    # Per-cell MC std <= sqrt(0.25 / 40000) = 0.0025.
    assert (closed - mc).abs().max() < 0.015
    assert closed.max() > 0.5  # the test looks at a box, not at empty space


def test_correlated_cov_keeps_expected_area_and_stays_close_to_monte_carlo():
    # Correlation 0.8 in the box frame is where dropping it costs most (documented approximation).
    args = one_object(1.0, 0.4, [[0.5, 0.4], [0.4, 0.5]], 4.6, 1.9, 0.0)
    closed = expected_occupancy(*args, raster=SMALL, config=WIDE)[0]
    mc = monte_carlo_cover(args, SMALL, samples=40_000, seed=1, min_std=WIDE.min_std_m)
    cells_per_box = 4.6 * 1.9 / SMALL.resolution**2
    assert float(closed.sum()) == pytest.approx(cells_per_box, rel=1e-3)
    assert (closed - mc).abs().max() < 0.2
    assert (closed - mc).abs().mean() < 0.02


def test_independent_objects_compose_as_one_minus_product():
    g = torch.Generator().manual_seed(2)
    B, M = 2, 5
    existence = torch.rand(B, M, generator=g, dtype=torch.float64)
    position = torch.randn(B, M, 2, generator=g, dtype=torch.float64) * 2.0
    cov = torch.eye(2, dtype=torch.float64).expand(B, M, 2, 2) * 0.2
    size = torch.rand(B, M, 2, generator=g, dtype=torch.float64) * 3.0 + 0.5
    heading = torch.rand(B, M, generator=g, dtype=torch.float64) * 6.0
    together = expected_occupancy(existence, position, cov, size, heading, SMALL, WIDE)
    free = torch.ones_like(together)
    for m in range(M):
        one = expected_occupancy(*(t[:, m : m + 1] for t in (existence, position, cov, size, heading)), SMALL, WIDE)
        free = free * (1.0 - one)
    torch.testing.assert_close(together, 1.0 - free)
    assert float(together.min()) >= 0.0 and float(together.max()) <= 1.0


def test_gradcheck_float64_tiny_raster():
    raster = RasterConfig(size=8, resolution=0.5)
    config = RenderConfig(window_cells=8, min_std_m=0.05)
    d = torch.float64
    existence = torch.tensor([[0.6, 0.4]], dtype=d, requires_grad=True)
    # Means away from cell boundaries, so the window does not move under finite differences.
    position = torch.tensor([[[0.13, 0.37], [-0.61, -0.88]]], dtype=d, requires_grad=True)
    cov = torch.tensor([[[[0.3, 0.05], [0.05, 0.2]], [[0.1, 0.0], [0.0, 0.4]]]], dtype=d, requires_grad=True)
    size = torch.tensor([[[1.8, 0.9], [1.1, 0.7]]], dtype=d, requires_grad=True)
    heading = torch.tensor([[0.3, -1.1]], dtype=d, requires_grad=True)

    def render(e, p, c, s, h):
        return expected_occupancy(e, p, c, s, h, raster, config)

    assert torch.autograd.gradcheck(render, (existence, position, cov, size, heading), eps=1e-6, atol=1e-6)


def test_zero_existence_renders_nothing_and_occupancy_grows_with_existence():
    _, position, cov, size, heading = one_object(1.0, 0.0, [[0.2, 0.0], [0.0, 0.2]], 4.6, 1.9, 0.3)
    levels = [
        expected_occupancy(torch.full((1, 1), e, dtype=torch.float64), position, cov, size, heading, SMALL, WIDE)
        for e in (0.0, 0.3, 0.6, 0.9)
    ]
    assert float(levels[0].abs().max()) == 0.0
    for low, high in zip(levels[:-1], levels[1:], strict=True):
        assert bool((high >= low).all())
        assert float((high - low).max()) > 0.1


@pytest.mark.parametrize("far", [(60.0, 0.0), (-30.0, 40.0), (1e6, -1e6), (1e30, 1e30)])
def test_far_away_object_renders_nothing_and_has_finite_gradients(far):
    existence, position, cov, size, heading = one_object(*far, [[0.5, 0.0], [0.0, 0.5]], 4.6, 1.9, 0.0)
    position.requires_grad_(True)
    occupancy = expected_occupancy(existence, position, cov, size, heading, SMALL, WIDE)
    assert float(occupancy.detach().abs().max()) == 0.0
    occupancy.sum().backward()
    assert bool(torch.isfinite(position.grad).all())


def test_object_lands_where_the_sensor_would_draw_it():
    # Mean on a cell centre 3.15 m ahead, 2.25 m left: the peak is the cell `ego_xy_to_cell` names.
    args = one_object(3.15, 2.25, [[0.01, 0.0], [0.0, 0.01]], 1.0, 1.0, 0.0)
    occupancy = expected_occupancy(*args, raster=SMALL, config=WIDE)[0]
    row, col, inside = ego_xy_to_cell(torch.tensor([3.15, 2.25]), SMALL)
    assert bool(inside) and float(occupancy[row, col]) > 0.99
    assert int(occupancy.argmax()) == int(row) * SMALL.size + int(col)
    assert int(col) < SMALL.size // 2  # left of the ego is left of the raster's middle


def test_heading_none_means_aligned_with_ego_x():
    existence, position, cov, size, heading = one_object(1.0, 0.5, [[0.2, 0.1], [0.1, 0.3]], 4.0, 1.5, 0.0)
    with_zero = log_free_probability(existence, position, cov, size, heading, SMALL, WIDE)
    torch.testing.assert_close(log_free_probability(existence, position, cov, size, None, SMALL, WIDE), with_zero)


@pytest.mark.parametrize(
    ("index", "bad_shape", "field"),
    [(1, (1, 2, 2), "position"), (2, (1, 1, 4), "position_cov"), (3, (1, 1, 3), "size"), (4, (2, 1), "heading")],
)
def test_bad_shapes_name_the_field(index, bad_shape, field):
    args = list(one_object(0.0, 0.0, [[0.2, 0.0], [0.0, 0.2]], 1.0, 1.0, 0.0))
    args[index] = torch.zeros(bad_shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=f"^{field}:"):
        expected_occupancy(*args, raster=SMALL)


def test_configs_reject_bad_values():
    with pytest.raises(ConfigError, match="RenderConfig.window_cells"):
        RenderConfig(window_cells=1)
    with pytest.raises(ConfigError, match="TargetConfig.fade_m"):
        TargetConfig(fade_m=0.0)
    with pytest.raises(ConfigError, match="TargetConfig.occluded_weight"):
        TargetConfig(occluded_weight=1.5)


def wall_bev(raster: RasterConfig, row: int, cols: range) -> torch.Tensor:
    bev = torch.zeros(1, 2, raster.size, raster.size)
    bev[0, 0, row, cols.start : cols.stop] = 1.0
    bev[0, 1, row, cols.start : cols.stop] = 1.5
    return bev


def test_observed_target_is_free_in_front_half_at_the_surface_and_filled_behind():
    raster = RasterConfig(size=32, resolution=0.5)  # ego at row 22.4, column 16
    bev = wall_bev(raster, row=12, cols=range(12, 21))  # a wall ~5 m ahead
    target, weight = observe(bev, raster, TargetConfig(fill_depth_m=1.0, fade_m=1.0, occluded_weight=0.0))
    col = 16
    assert float(target[0, 12, col]) == 0.5 and float(weight[0, 12, col]) == 1.0  # the surface cell
    assert bool((target[0, 13:22, col] == 0).all()) and bool((weight[0, 13:22, col] == 1).all())  # ray passed
    assert float(target[0, 11, col]) == 1.0 and float(target[0, 10, col]) == 1.0  # 0.5 and 1.0 m behind
    assert float(weight[0, 2, col]) == 0.0  # 5 m behind: hidden, unknown
    assert float(target[0, 12, 2]) == 0.0 and float(weight[0, 12, 2]) == 1.0  # beside the wall: seen empty
    torch.testing.assert_close(observed_target(bev, raster), observe(bev, raster)[0])


def test_cells_beyond_sensor_range_weigh_nothing():
    raster = RasterConfig(size=32, resolution=0.5)
    _, weight = observe(torch.zeros(1, 2, 32, 32), raster, TargetConfig(max_range_m=5.0))
    ahead, left = cell_centres(raster, torch.float32, torch.device("cpu"))
    distance = torch.hypot(ahead[:, None], left[None, :])
    assert bool((weight[0][distance > 5.0] == 0).all()) and bool((weight[0][distance <= 5.0] == 1).all())


def staircase(raster: RasterConfig, row: int, col: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A BEV of returns touching only at corners, from (row, col) up and to the right, and the
    row + col index of each cell minus the staircase's (< 0 beyond it, > 0 on the ego's side)."""
    bev = torch.zeros(1, 2, raster.size, raster.size)
    for k in range(steps):
        bev[0, 0, row - k, col + k] = 1.0
    index = torch.arange(raster.size)
    return bev, index[:, None] + index[None, :] - (row + col)


def within_span(raster: RasterConfig, first: tuple[int, int], last: tuple[int, int], margin: float) -> torch.Tensor:
    """[H, W] cells whose bearing from the ego lies between those of cells `first` and `last`."""
    ahead, left = cell_centres(raster, torch.float64, torch.device("cpu"))
    bearing = torch.atan2(left[None, :], ahead[:, None])
    ends = [float(bearing[r, c]) for r, c in (first, last)]
    return (bearing > min(ends) + margin) & (bearing < max(ends) - margin)


def test_a_diagonal_outline_shadows_what_is_behind_it_and_does_not_move_towards_the_sensor():
    raster = RasterConfig(size=32, resolution=0.5)
    bev, side = staircase(raster, row=14, col=10, steps=10)
    span = within_span(raster, (14, 10), (5, 19), margin=0.05)
    depth = depth_behind_surface(bev, raster)[0]
    beyond = span & (side < -1)
    assert int(beyond.sum()) > 100 and bool((depth[beyond] > 0).all())  # no ray slips through a corner
    target = observed_target(bev, raster)[0]
    in_front = span & (side > 0)
    assert int(in_front.sum()) > 30 and bool((target[in_front] == 0).all())  # bridging adds no surface in front


def test_observe_rejects_bad_bev_shape():
    with pytest.raises(ValueError, match=r"^bev: expected shape \[B, 2, 24, 24\]"):
        observe(torch.zeros(1, 3, 24, 24), SMALL)
