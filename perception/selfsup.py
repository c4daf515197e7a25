"""Self-supervised objectives for the detector: no labels, only the sensor and time.

1. Analysis by synthesis: render the dense candidates into expected occupancy
   (`perception.render`) and compare it with what the sensor saw, through a
   class-balanced cross-entropy over the observed cells.
2. Time as supervision:
   a. contrastive: the embedding of frame t should pick out the embedding of a
      frame close in time from the same episode (or another augmented view of
      the same frame) among the other episodes of the batch (InfoNCE);
   b. prediction: a head on the stride-4 features predicts the next frame's
      BEV occupancy.

Functions take plain tensors (shapes in the docstrings), so they do not depend
on the detector's output types. Every random draw comes from an explicit seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import ConfigError
from perception.render import RenderConfig, TargetConfig, log_free_probability, observe
from sim.config import RasterConfig
from sim.sensors.raster import ego_origin_cell, grid_sample_coords

# log(-expm1(x)) is evaluated at x <= -this, so a cell nothing covers has a finite log-occupancy.
_MIN_NEG_LOG_FREE = 1e-30
_EPS = 1e-12


def balanced_bce(
    log_p: Tensor, log_not_p: Tensor, target: Tensor, weight: Tensor, positive_share: float = 0.5
) -> Tensor:
    """Region-balanced binary cross-entropy, scalar: mean over the batch of per-sample losses.

    All inputs [B, H, W] (weight broadcastable). Cells whose target is above 0
    (the object region) share `positive_share` of each sample's total weight and
    the rest share the remainder, so the few occupied cells count as much as the
    many empty ones and a scene's loss does not scale with how much of it is
    empty. Each cell's whole cross-entropy is scaled by one factor, so its
    optimum stays p = target: splitting a soft target's two terms between the
    classes instead would push every soft target towards 1.
    """
    dims = tuple(range(1, target.dim()))
    region = (target > 0).to(target.dtype)
    weight = weight.expand_as(target)
    in_region = weight * region
    outside = weight * (1.0 - region)
    scale = positive_share * in_region / in_region.sum(dims, keepdim=True).clamp_min(_EPS)
    scale = scale + (1.0 - positive_share) * outside / outside.sum(dims, keepdim=True).clamp_min(_EPS)
    return -(scale * (target * log_p + (1.0 - target) * log_not_p)).sum(dims).mean()


class AnalysisBySynthesisLoss(nn.Module):
    """Rendered candidate occupancy vs the occupancy the sensor implies (no labels).

    Cells are compared by `balanced_bce` with the target and weights of
    `perception.render.observe` (free in front of visible surfaces, filled just
    behind them, unknown deeper in their shadow); the object region carries
    `positive_share` of each sample's weight. `background` is the probability that an occupied cell is explained by
    something no candidate covers (a miss, a ghost, a truncated window): the
    cell's modelled occupancy is background + (1 - background) * rendered. It
    caps the loss of a cell nothing covers at -log(background), so unexplained
    hits cannot dominate the gradient.
    """

    def __init__(
        self,
        raster: RasterConfig = RasterConfig(),
        render: RenderConfig = RenderConfig(),
        target: TargetConfig = TargetConfig(),
        background: float = 1e-3,
        positive_share: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0 < background < 1:
            raise ConfigError(f"AnalysisBySynthesisLoss.background: expected in (0, 1), got {background!r}")
        if not 0 < positive_share < 1:
            raise ConfigError(f"AnalysisBySynthesisLoss.positive_share: expected in (0, 1), got {positive_share!r}")
        self.raster, self.render, self.target = raster, render, target
        self.background, self.positive_share = background, positive_share

    def forward(
        self,
        existence: Tensor,
        position: Tensor,
        position_cov: Tensor,
        size: Tensor,
        heading: Tensor | None,
        bev: Tensor,
    ) -> Tensor:
        """Scalar loss.

        Args:
            existence: [B, M] in [0, 1]; position: [B, M, 2] m, ego frame;
                position_cov: [B, M, 2, 2] m^2; size: [B, M, 2] (length, width) m;
                heading: [B, M] rad or None (see `perception.render.log_free_probability`).
            bev: [B, 2, H, W] sensor raster of the same frame (channel 0: returns).
        """
        target, weight = observe(bev, self.raster, self.target)  # (B, H, W) each, no gradient
        log_free = log_free_probability(existence, position, position_cov, size, heading, self.raster, self.render)
        log_occ = torch.log(-torch.expm1(log_free.clamp(max=-_MIN_NEG_LOG_FREE)))
        log_bg = math.log(self.background)
        keep = math.log1p(-self.background)
        log_p = torch.logaddexp(torch.full_like(log_occ, log_bg), keep + log_occ)
        target, weight = target.to(log_p.dtype), weight.to(log_p.dtype)
        return balanced_bce(log_p, keep + log_free, target, weight, self.positive_share)


class ProjectionHead(nn.Module):
    """[B, in_dim] embedding -> [B, out_dim] projection for the contrastive loss (SimCLR's MLP head).

    The loss normalises its inputs, so the head's output scale is free.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = in_dim if hidden_dim is None else hidden_dim
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden_dim", hidden)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"ProjectionHead.{name}: expected an int >= 1, got {value!r}")
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def multiview_contrastive_loss(views: Tensor, temperature: float = 0.1, episode: Tensor | None = None) -> Tensor:
    """InfoNCE over V views of B samples, every ordered pair of distinct views, scalar.

    `views`: [B, V, D]; views[b, i] and views[b, j] are positives (frame t and
    t + k of one episode, or two augmentations of one frame). For each ordered
    pair (i, j) anchor b in view i must find its own sample among the B samples
    of view j (cosine similarity / temperature, cross-entropy); the V (V - 1)
    pair losses are averaged. For V = 2 this is the symmetric (CLIP-style)
    loss, and when all embeddings are equal every logit is the same, so the
    loss is log(B) for every V.

    `episode`: optional [B] long episode ids: another sample of the anchor's own
    episode is neither a positive nor a negative (it is masked out), so
    negatives come from other episodes only.
    """
    if views.dim() != 3 or views.shape[1] < 2:
        raise ValueError(f"views: expected shape [B, V >= 2, D], got {tuple(views.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature!r}")
    B, V, _ = views.shape
    z = F.normalize(views, dim=-1).transpose(0, 1)  # (V, B, D)
    logits = torch.einsum("ibd,jcd->ijbc", z, z) / temperature  # (V, V, B, B): anchor view, candidate view
    if episode is not None:
        if tuple(episode.shape) != (B,):
            raise ValueError(f"episode: expected shape [B] = ({B},), got {tuple(episode.shape)}")
        eye = torch.eye(B, dtype=torch.bool, device=views.device)
        same_episode = (episode[:, None] == episode[None, :]) & ~eye  # (B, B)
        logits = logits.masked_fill(same_episode, torch.finfo(logits.dtype).min)
    own = torch.diagonal(logits, dim1=-2, dim2=-1)  # (V, V, B)
    per_anchor = torch.logsumexp(logits, dim=-1) - own  # (V, V, B)
    pairs = ~torch.eye(V, dtype=torch.bool, device=views.device)  # (V, V) distinct views only
    return (per_anchor.mean(-1) * pairs).sum() / (V * (V - 1))


def temporal_contrastive_loss(
    z_t: Tensor, z_tp: Tensor, temperature: float = 0.1, episode: Tensor | None = None
) -> Tensor:
    """Symmetric InfoNCE between frame t [B, D] and frame t + k [B, D] of the same episodes, scalar.

    Row b of both comes from one episode; the other rows are the negatives.
    Pass projections (`ProjectionHead`) of the detector's pooled embeddings.
    """
    if z_t.dim() != 2 or tuple(z_tp.shape) != tuple(z_t.shape):
        raise ValueError(f"z_t, z_tp: expected equal shapes [B, D], got {tuple(z_t.shape)} and {tuple(z_tp.shape)}")
    return multiview_contrastive_loss(torch.stack((z_t, z_tp), dim=1), temperature, episode)


@dataclass(frozen=True)
class AugmentConfig:
    """Views for the contrastive loss.

    Attributes:
        max_rotation_rad: the scene turns about the ego by an angle uniform in
            [-max, max]; cells that rotate in from outside the raster are empty.
        point_dropout: probability that a sensor cell's return is removed.
    """

    max_rotation_rad: float = math.pi / 6
    point_dropout: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.max_rotation_rad <= math.pi:
            raise ConfigError(f"AugmentConfig.max_rotation_rad: expected in [0, pi], got {self.max_rotation_rad!r}")
        if not 0 <= self.point_dropout < 1:
            raise ConfigError(f"AugmentConfig.point_dropout: expected in [0, 1), got {self.point_dropout!r}")


def _check_raster_stack(name: str, x: Tensor, raster: RasterConfig) -> None:
    H = raster.size
    if x.dim() != 4 or x.shape[-2] != H or x.shape[-1] != H:
        raise ValueError(f"{name}: expected shape [B, C, {H}, {H}], got {tuple(x.shape)}")


def rotate_about_ego(x: Tensor, angle: Tensor, raster: RasterConfig = RasterConfig()) -> Tensor:
    """Turn the scene in `x` [B, C, H, W] counter-clockwise by `angle` [B] rad about the ego origin.

    Nearest-cell resampling, so 0/1 returns stay 0/1 and heights stay heights;
    content turned off the raster is lost and the area turned in is empty.
    """
    _check_raster_stack("x", x, raster)
    H = raster.size
    row0, col0 = ego_origin_cell(raster)
    centre = torch.arange(H, dtype=torch.float64, device=x.device) + 0.5
    ahead = (row0 - centre)[:, None].expand(H, H)  # (H, W) ego x of each output cell, in cells
    left = (col0 - centre)[None, :].expand(H, H)  # (H, W) ego y
    c = torch.cos(angle.to(torch.float64))[:, None, None]  # (B, 1, 1)
    s = torch.sin(angle.to(torch.float64))[:, None, None]
    # Output cell p shows what was at R(-angle) p.
    src_ahead = c * ahead + s * left  # (B, H, W)
    src_left = c * left - s * ahead
    grid = torch.stack(grid_sample_coords(row0 - src_ahead, col0 - src_left, H, H), dim=-1).to(x.dtype)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def augment_bev(
    x: Tensor,
    seed: int,
    config: AugmentConfig = AugmentConfig(),
    raster: RasterConfig = RasterConfig(),
    sensor_channels: int | None = None,
) -> Tensor:
    """A random view of `x` [B, C, H, W]: point dropout, then a rotation about the ego.

    Draws come from a CPU `torch.Generator` seeded with `seed`, so a view is the
    same on every device. Dropout removes every channel of a dropped cell among
    the first `sensor_channels` (None: all; pass the BEV channel count when map
    channels follow, so the map is rotated but not thinned).
    """
    _check_raster_stack("x", x, raster)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    B, C, H, W = x.shape
    k = C if sensor_channels is None else sensor_channels
    if not 0 <= k <= C:
        raise ValueError(f"sensor_channels: expected in [0, {C}], got {sensor_channels!r}")
    generator = torch.Generator().manual_seed(seed)
    angle = (torch.rand(B, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * config.max_rotation_rad
    keep = (torch.rand(B, 1, H, W, generator=generator) >= config.point_dropout).to(x.dtype).to(x.device)
    channel_is_sensor = (torch.arange(C, device=x.device) < k).reshape(1, C, 1, 1)
    thinned = torch.where(channel_is_sensor, x * keep, x)
    return rotate_about_ego(thinned, angle.to(x.device), raster)


class NextFrameHead(nn.Module):
    """Stride-`stride` features [B, C, G, G] -> logits [B, H, W] of the next frame's BEV occupancy.

    Two 3x3 convolutions then a 1x1 to stride^2 channels that a pixel shuffle
    turns into full-resolution cells (each feature cell predicts its own
    stride x stride block), which exports to ONNX as DepthToSpace.
    """

    def __init__(self, in_channels: int, raster: RasterConfig = RasterConfig(), hidden: int = 32, stride: int = 4):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("hidden", hidden), ("stride", stride)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"NextFrameHead.{name}: expected an int >= 1, got {value!r}")
        if raster.size % stride:
            raise ValueError(f"NextFrameHead.stride: expected a divisor of raster.size={raster.size}, got {stride}")
        self.in_channels, self.grid = in_channels, raster.size // stride
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, stride * stride, 1),
            nn.PixelShuffle(stride),
        )

    def forward(self, features: Tensor) -> Tensor:
        expected = (self.in_channels, self.grid, self.grid)
        if features.dim() != 4 or tuple(features.shape[1:]) != expected:
            raise ValueError(
                f"features: expected shape [B, {', '.join(map(str, expected))}], got {tuple(features.shape)}"
            )
        return self.body(features).squeeze(1)


def next_frame_loss(pred_logits: Tensor, next_bev: Tensor) -> Tensor:
    """Class-balanced cross-entropy of next-frame occupancy logits [B, H, W] vs the next BEV [B, 2, H, W], scalar.

    The target is the next frame's returns (channel 0) as seen, occlusion
    included: what is hidden next frame follows from this frame's scene.
    """
    if pred_logits.dim() != 3:
        raise ValueError(f"pred_logits: expected shape [B, H, W], got {tuple(pred_logits.shape)}")
    B, H, W = pred_logits.shape
    if tuple(next_bev.shape) != (B, 2, H, W):
        raise ValueError(f"next_bev: expected shape [B, 2, H, W] = ({B}, 2, {H}, {W}), got {tuple(next_bev.shape)}")
    target = next_bev[:, 0].clamp(0.0, 1.0).to(pred_logits.dtype)
    ones = torch.ones_like(target)
    return balanced_bce(F.logsigmoid(pred_logits), F.logsigmoid(-pred_logits), target, ones)
