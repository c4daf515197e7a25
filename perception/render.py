"""Differentiable BEV rendering of dense candidates, and the target it is compared with.

`expected_occupancy` answers, for every raster cell, "what is the probability
that some candidate covers this cell's centre?" under independent candidates:

    P(occupied) = 1 - prod_m (1 - existence_m * q_m(cell)),

where q_m is the probability that the cell centre lies inside object m's box
when the box centre is distributed N(position_m, position_cov_m) (heading and
size taken at their means).

Footprint model: the box itself, convolved with the Gaussian, through separable
normal-CDF terms in the box frame (u along the heading, v across it):

    q = P(|u - du| <= l/2) * P(|v - dv| <= w/2),  du ~ N(0, s_u^2), dv ~ N(0, s_v^2),

with s_u^2, s_v^2 the position variance along and across the heading. This is
exact when the covariance is diagonal in the box frame (isotropic, or
along/across-track uncertainty) and drops only the along/across correlation
otherwise; both marginals and the total (length * width) stay exact. At a
box-frame correlation of 0.8 the largest cell error against Monte Carlo is
about 0.13. A Gaussian-shaped footprint was rejected:
it reaches 1 only at the box centre and blurs its edges even for an exactly
known position, so a correctly placed car would never render as occupied and
the objective would bend sizes to compensate. The erf form has a flat top and
sharp edges as the covariance shrinks.

Cost: a fixed `window_cells` x `window_cells` window of cells around each
candidate's mean cell is evaluated and scatter-added (in log space) into the
raster, so memory is B * M * K^2 instead of B * M * H * W (4.7 M entries
for B = 8, M = 1024, K = 24 instead of 134 M) and shapes stay static.
Probability mass outside the window is dropped: the default window reaches at
least 11 cells (5.5 m) from the mean, a car's half-diagonal (2.5 m) plus 3 std
of 1 m; longer boxes or wider uncertainty need a larger `window_cells` (time
and memory grow with its square).

The sensor does not see footprints, only the visible surfaces of boxes (an L
or a single edge), so the target is not the raw hit raster: `observe` casts
rays from the sensor through the BEV hits and labels every cell by its depth
behind the first visible surface on its ray (see `TargetConfig`): in front it
is observed free, just behind it is filled (the box continues there), deep in
the shadow it is unknown and weighs little or nothing. An isotropic dilation
of the hits (max-pooling) was rejected: it marks cells in front of a surface,
which the ray passed through, as occupied, and cells inside a box seen from
one side as empty.

Raster geometry follows `sim.sensors.raster`: row 0 is the far front, the ego
origin sits at (`ego_row_fraction` * H, W / 2), columns grow to the ego's right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from core.config import require
from sim.config import RasterConfig
from sim.sensors.raster import cell_centres, cell_to_ego, ego_to_cell, ego_xy_to_cell

# existence * q is kept below 1 by this much so log1p(-p) and its gradient stay finite.
_MAX_CELL_PROB_GAP = 1e-6
_SQRT_HALF = math.sqrt(0.5)


@dataclass(frozen=True)
class RenderConfig:
    """How candidates are rendered into occupancy.

    Attributes:
        window_cells: K, side of the square window of cells evaluated around each
            candidate's mean cell; mass outside it is dropped.
        min_std_m: added in quadrature to the position std along and across the
            box, m: keeps the normal CDF's argument finite for a zero covariance
            and is exact (the centre is treated as N(mean, cov + min_std^2 I)).
    """

    window_cells: int = 24
    min_std_m: float = 0.05

    def __post_init__(self) -> None:
        o = "RenderConfig"
        require(self.window_cells >= 2, o, "window_cells", "an int >= 2", self.window_cells)
        require(self.min_std_m > 0, o, "min_std_m", "> 0 m", self.min_std_m)


@dataclass(frozen=True)
class TargetConfig:
    """How visible-surface hits become an occupancy target and cell weights.

    Every cell is placed on the sensor ray through its centre; its depth is its
    range minus the range of the first hit on that ray.

    Attributes:
        fill_depth_m: cells from half a cell to this far behind the first
            visible surface are occupied (target 1): a box continues behind
            the outline the sensor sees. 1 m is a pedestrian's depth and the
            near part of a car.
        fade_m: beyond `fill_depth_m` the target falls linearly to 0 over this
            distance, m (the object may or may not continue).
        max_range_m: sensing radius, m (the simulator's default is 50 m); cells
            farther away are unobserved and get weight 0.
        occluded_weight: weight of cells deeper in a shadow than fill + fade,
            whose state the sensor cannot know (target 0 there). 0 leaves the
            hidden part of a box unpenalised; > 0 is a weak "hidden space is empty"
            prior that shrinks boxes into the shadow.
        close_gaps_cells: before casting rays the returns are closed
            (dilated, then eroded) with a square of this radius, cells, and
            bridged (`ray_blockers`): an outline with a missing return would
            otherwise let rays through and mark the inside of a box as observed
            free. Closing fills gaps up to 2 * radius cells wide without
            thickening the outline.
    """

    fill_depth_m: float = 1.0
    fade_m: float = 1.0
    max_range_m: float = 50.0
    occluded_weight: float = 0.0
    close_gaps_cells: int = 1

    def __post_init__(self) -> None:
        o = "TargetConfig"
        require(self.close_gaps_cells >= 0, o, "close_gaps_cells", "an int >= 0", self.close_gaps_cells)
        require(self.fill_depth_m >= 0, o, "fill_depth_m", ">= 0 m", self.fill_depth_m)
        require(self.fade_m > 0, o, "fade_m", "> 0 m", self.fade_m)
        require(self.max_range_m > 0, o, "max_range_m", "> 0 m", self.max_range_m)
        require(0 <= self.occluded_weight <= 1, o, "occluded_weight", "in [0, 1]", self.occluded_weight)


def _check_shape(name: str, t: Tensor, expected: tuple[int, ...], meaning: str) -> None:
    if tuple(t.shape) != expected:
        raise ValueError(f"{name}: expected shape {meaning} = {expected}, got {tuple(t.shape)}")


def _check_candidates(existence: Tensor, position: Tensor, cov: Tensor, size: Tensor, heading: Tensor | None) -> None:
    if existence.dim() != 2:
        raise ValueError(f"existence: expected shape [B, M], got {tuple(existence.shape)}")
    B, M = existence.shape
    _check_shape("position", position, (B, M, 2), "[B, M, 2]")
    _check_shape("position_cov", cov, (B, M, 2, 2), "[B, M, 2, 2]")
    _check_shape("size", size, (B, M, 2), "[B, M, 2]")
    if heading is not None:
        _check_shape("heading", heading, (B, M), "[B, M]")


def _normal_cdf(z: Tensor) -> Tensor:
    """Standard normal CDF through erfc, accurate in the lower tail in float32 (about 1e-38 at
    z = -13), where `torch.special.ndtr` flushes to 0 below z = -5.5. erfc has no ONNX
    operator: the renderer is a training objective, not part of an exported graph."""
    return 0.5 * torch.erfc(-z * _SQRT_HALF)


def interval_probability(offset: Tensor, half: Tensor, std: Tensor) -> Tensor:
    """P(|offset - d| <= half) for d ~ N(0, std^2), elementwise (broadcasting).

    The function is even in `offset`; evaluating it at |offset| keeps the
    subtraction between a value near 1 and a tail (never two nearly equal
    upper tails), so far cells keep a tiny but nonzero, differentiable value.
    """
    a = offset.abs()
    return (_normal_cdf((half - a) / std) - _normal_cdf((-half - a) / std)).clamp_min(0.0)


def _box_frame_std(cov: Tensor, cos: Tensor, sin: Tensor, min_std: float) -> tuple[Tensor, Tensor]:
    """Position std along [B, M] and across [B, M] the heading, with the floor added in quadrature."""
    xx, yy = cov[..., 0, 0], cov[..., 1, 1]
    xy = 0.5 * (cov[..., 0, 1] + cov[..., 1, 0])
    var_u = cos * cos * xx + 2.0 * cos * sin * xy + sin * sin * yy
    var_v = sin * sin * xx - 2.0 * cos * sin * xy + cos * cos * yy
    floor = min_std * min_std
    return (var_u.clamp_min(0.0) + floor).sqrt(), (var_v.clamp_min(0.0) + floor).sqrt()


def _window_cells(position: Tensor, raster: RasterConfig, k: int) -> tuple[Tensor, Tensor]:
    """Rows [B, M, K] and columns [B, M, K] (long) of the window around each mean cell.

    The mean's cell is clamped just outside the raster first, so a far-away or
    huge position cannot overflow the integer conversion; its window then lies
    wholly outside and renders nothing.
    """
    H = raster.size
    row, col = ego_to_cell(position[..., 0].detach(), position[..., 1].detach(), raster)  # (B, M) each
    row, col = row.clamp(-k, H + k).floor().long(), col.clamp(-k, H + k).floor().long()
    steps = torch.arange(k, device=position.device) - k // 2  # (K,)
    return row.unsqueeze(-1) + steps, col.unsqueeze(-1) + steps


def log_free_probability(
    existence: Tensor,
    position: Tensor,
    position_cov: Tensor,
    size: Tensor,
    heading: Tensor | None,
    raster: RasterConfig = RasterConfig(),
    config: RenderConfig = RenderConfig(),
) -> Tensor:
    """[B, H, W] log P(no candidate covers the cell) = sum_m log(1 - existence_m q_m(cell)), <= 0.

    Args:
        existence: [B, M] probability in [0, 1] that candidate m is real.
        position: [B, M, 2] mean box centre, m, ego frame.
        position_cov: [B, M, 2, 2] covariance of `position`, m^2 (symmetric PSD).
        size: [B, M, 2] box (length, width), m.
        heading: [B, M] box heading, rad, ego frame; None for boxes aligned with
            the ego's x axis (heading 0).

    Differentiable in every float input. Candidates are summed by a scatter-add,
    whose float order is not fixed on CUDA (results agree to rounding).
    """
    _check_candidates(existence, position, position_cov, size, heading)
    B, M = existence.shape
    H, K = raster.size, config.window_cells
    rows, cols = _window_cells(position, raster, K)  # (B, M, K) each
    dtype = position.dtype
    # (B, M, K) each: ego x of each window row's centres, ego y of each window column's centres
    cell_x, cell_y = cell_to_ego(rows.to(dtype) + 0.5, cols.to(dtype) + 0.5, raster)
    dx = (cell_x - position[..., 0:1]).unsqueeze(-1)  # (B, M, K, 1)
    dy = (cell_y - position[..., 1:2]).unsqueeze(-2)  # (B, M, 1, K)
    angle = heading if heading is not None else torch.zeros_like(existence)
    cos, sin = torch.cos(angle), torch.sin(angle)  # (B, M)
    std_u, std_v = _box_frame_std(position_cov, cos, sin, config.min_std_m)
    c, s = cos[..., None, None], sin[..., None, None]
    u = dx * c + dy * s  # (B, M, K, K) offset along the heading
    v = dy * c - dx * s  # (B, M, K, K) offset across it
    q_u = interval_probability(u, 0.5 * size[..., 0, None, None], std_u[..., None, None])
    q_v = interval_probability(v, 0.5 * size[..., 1, None, None], std_v[..., None, None])
    p = (existence[..., None, None] * q_u * q_v).clamp(max=1.0 - _MAX_CELL_PROB_GAP)  # (B, M, K, K)
    inside = ((rows >= 0) & (rows < H)).unsqueeze(-1) & ((cols >= 0) & (cols < H)).unsqueeze(-2)
    # Cells outside the raster go to one spare slot past the end, dropped below.
    flat = torch.where(
        inside, rows.unsqueeze(-1) * H + cols.unsqueeze(-2), torch.full_like(inside, H * H, dtype=torch.long)
    )
    log_free = torch.zeros(B, H * H + 1, dtype=dtype, device=position.device)
    log_free = log_free.scatter_add(1, flat.reshape(B, -1), torch.log1p(-p).reshape(B, -1))
    return log_free[:, : H * H].reshape(B, H, H)


def expected_occupancy(
    existence: Tensor,
    position: Tensor,
    position_cov: Tensor,
    size: Tensor,
    heading: Tensor | None,
    raster: RasterConfig = RasterConfig(),
    config: RenderConfig = RenderConfig(),
) -> Tensor:
    """[B, H, W] in [0, 1]: probability that each cell centre is covered by some candidate.

    Inputs as in `log_free_probability`.
    """
    return -torch.expm1(log_free_probability(existence, position, position_cov, size, heading, raster, config))


def _cell_ranges(raster: RasterConfig, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Range [H, W] and bearing [H, W] of every cell centre from the sensor origin."""
    ahead, left = cell_centres(raster, dtype, device)  # (H,), (W,)
    x, y = ahead[:, None], left[None, :]
    return torch.hypot(x, y), torch.atan2(y.expand(raster.size, -1), x.expand(-1, raster.size))


def _ray_grid(raster: RasterConfig, max_range: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """Cells along rays from the sensor: flat cell index [A, S] and an inside-the-raster mask [A, S].

    Rays are spaced so that neighbours are at most half a cell apart at
    `max_range`, with samples every half cell, so no ray skips a cell it
    crosses by more than a corner.
    """
    step = 0.5 * raster.resolution
    rays = math.ceil(2.0 * math.pi * max_range / step)
    t = (torch.arange(math.ceil(max_range / step), dtype=torch.float64, device=device) + 0.5) * step  # (S,)
    phi = torch.arange(rays, dtype=torch.float64, device=device) * (2.0 * math.pi / rays)  # (A,)
    xy = torch.stack((torch.cos(phi)[:, None] * t, torch.sin(phi)[:, None] * t), dim=-1)  # (A, S, 2)
    row, col, inside = ego_xy_to_cell(xy, raster)
    return torch.where(inside, row * raster.size + col, torch.zeros_like(row)), inside


def _shift(x: Tensor, rows: int, cols: int) -> Tensor:
    """x[..., i + rows, j + cols] at [..., i, j] for `x` [..., H, W] (rows, cols in {-1, 0, 1}), 0 off the edge."""
    padded = F.pad(x, (1, 1, 1, 1))
    H, W = x.shape[-2:]
    return padded[..., 1 + rows : 1 + rows + H, 1 + cols : 1 + cols + W]


def ray_blockers(occupancy: Tensor, raster: RasterConfig, radius: int) -> Tensor:
    """[B, H, W] cells that stop a ray: the returns `occupancy` [B, H, W], closed and bridged.

    Closing (max then min pool over a (2 radius + 1)^2 square) fills gaps in an
    outline without thickening it. Bridging then fills, beside every diagonal
    step of a staircase outline, the one of the two corner cells farther from
    the sensor: a ray sampled every half cell could otherwise slip through the
    shared corner and see through the box, and the nearer cell would move the
    surface a cell towards the sensor.
    """
    blockers = occupancy
    if radius > 0:
        k = 2 * radius + 1
        dilated = F.max_pool2d(occupancy.unsqueeze(1), k, stride=1, padding=radius)
        blockers = -F.max_pool2d(-dilated, k, stride=1, padding=radius).squeeze(1)
    cell_range = _cell_ranges(raster, occupancy.dtype, occupancy.device)[0]  # (H, W)
    bridged = blockers
    for dr, dc in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        # The cell bridges its row neighbour (dr) and column neighbour (dc); the
        # other cell that would bridge them is the diagonal one (dr, dc).
        farther = (cell_range >= _shift(cell_range, dr, dc)).to(occupancy.dtype)
        bridge = _shift(blockers, dr, 0) * _shift(blockers, 0, dc) * farther
        bridged = torch.maximum(bridged, bridge)
    return bridged


def depth_behind_surface(
    bev: Tensor, raster: RasterConfig = RasterConfig(), config: TargetConfig = TargetConfig()
) -> Tensor:
    """[B, H, W] range of each cell centre minus the range of the first hit on its ray, m.

    A hit's range is its cell centre's (the surface crosses the cell somewhere;
    the centre is the unbiased guess, where the ray's entry point would put every
    surface up to a cell too near). Negative in front of the first visible
    surface (the ray passed through: observed free), 0 at it, positive in its
    shadow; -inf on rays that hit nothing within `max_range_m`.
    `bev`: [B, 2, H, W] sensor raster, channel 0 the 0/1 returns.
    """
    _check_bev(bev, raster)
    B, H = bev.shape[0], raster.size
    flat, inside = _ray_grid(raster, config.max_range_m, bev.device)  # (A, S) each
    A, S = flat.shape
    cell_range, cell_bearing = _cell_ranges(raster, torch.float64, bev.device)  # (H, W) each
    blockers = ray_blockers(bev[:, 0], raster, config.close_gaps_cells)  # (B, H, W)
    returns = torch.gather(blockers.reshape(B, H * H), 1, flat.reshape(1, -1).expand(B, -1)).reshape(B, A, S)
    hit = (returns > 0) & inside
    hit_range = cell_range.reshape(-1)[flat].to(bev.dtype)  # (A, S)
    first = torch.where(hit, hit_range, torch.full_like(returns, math.inf)).amin(dim=-1)  # (B, A)
    ray = torch.remainder(torch.round(cell_bearing * (A / (2.0 * math.pi))).long(), A)  # (H, W) nearest ray
    first_at_cell = torch.gather(first, 1, ray.reshape(1, -1).expand(B, -1)).reshape(B, H, H)
    return cell_range.to(bev.dtype) - first_at_cell


def _check_bev(bev: Tensor, raster: RasterConfig) -> None:
    H = raster.size
    if bev.dim() != 4 or bev.shape[1] != 2 or bev.shape[2] != H or bev.shape[3] != H:
        raise ValueError(f"bev: expected shape [B, 2, {H}, {H}] (occupancy, height), got {tuple(bev.shape)}")


def observe(
    bev: Tensor, raster: RasterConfig = RasterConfig(), config: TargetConfig = TargetConfig()
) -> tuple[Tensor, Tensor]:
    """Soft occupancy target [B, H, W] in [0, 1] and cell weights [B, H, W] in [0, 1] from a BEV.

    Target along each ray, by depth d behind the first hit's cell centre: 0 in
    front (d <= -res/2), rising linearly to 1/2 at the surface cell (d = 0) and
    1 half a cell behind, 1 to `fill_depth_m`, then falling to 0 over `fade_m`.
    Every hit cell is 1/2: a visible outline crosses it somewhere, so its centre
    is inside the box about half the time, and a box whose edge runs through
    the hit cells is the optimum rather than one grown by a cell to cover them.
    Weight: 1 where observed (in front of and near a surface, within range),
    `occluded_weight` deeper in a shadow, 0 beyond `max_range_m`; hits weigh 1.
    No gradient flows: this is data.
    """
    with torch.no_grad():
        depth = depth_behind_surface(bev, raster, config)
        hits = bev[:, 0].clamp(0.0, 1.0)
        surface = (0.5 + depth / raster.resolution).clamp(0.0, 1.0)
        fill = (1.0 - (depth - config.fill_depth_m) / config.fade_m).clamp(0.0, 1.0)
        target = torch.where(hits > 0, 0.5 * hits, surface * fill)
        in_range = (_cell_ranges(raster, bev.dtype, bev.device)[0] <= config.max_range_m).to(bev.dtype)  # (H, W)
        shadow = depth > config.fill_depth_m + config.fade_m
        weight = torch.where(shadow, torch.full_like(depth, config.occluded_weight), torch.ones_like(depth))
        weight = torch.maximum(weight * in_range, hits)
    return target, weight


def observed_target(
    bev: Tensor, raster: RasterConfig = RasterConfig(), config: TargetConfig = TargetConfig()
) -> Tensor:
    """[B, H, W] soft occupancy target in [0, 1] from the visible-surface hits of `bev` [B, 2, H, W]."""
    return observe(bev, raster, config)[0]
