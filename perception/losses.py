"""Supervised CenterNet-style loss of the dense head against ground-truth object lists.

    targets = make_targets(labels, cfg.raster, cfg.stride)
    loss, parts = supervised_loss(detector(x), targets, cfg.raster, cfg.stride, labeled=mask)

Existence: penalty-reduced focal loss against Gaussian-splatted centre
heatmaps. At each ground-truth centre's cell: class cross-entropy, Gaussian
NLL of position and velocity with the full 2x2 covariance (what makes the
covariances honest), von Mises NLL of heading, L1 of log size. Every term
reads the same decoded `Candidates` that inference uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from core.config import ConfigError
from core.contracts import TensorContract, spec
from perception.decode import Candidates, cell_centres, dense_candidates
from perception.heads import DenseOutput
from sim.config import RasterConfig
from sim.sensors import ego_xy_to_cell
from sim.state import NUM_CLASSES
from sim.types import ObjectList

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class LossConfig:
    """Heatmap shape, focal-loss exponents and the weight of each term.

    Attributes:
        focal_alpha: exponent on the prediction in the focal loss (CenterNet: 2).
        focal_beta: exponent of the penalty reduction (1 - heat) near centres (CenterNet: 4).
        sigma_per_diagonal: heatmap std in cells per cell of box diagonal.
        min_sigma: smallest heatmap std, cells.
        max_sigma: largest heatmap std, cells; keeps every off-centre cell's heat
            strictly below 1, so positives are exactly the centre cells.
        weights: the existence, class, position, velocity, heading, size terms' weights.
    """

    focal_alpha: float = 2.0
    focal_beta: float = 4.0
    sigma_per_diagonal: float = 0.25
    min_sigma: float = 0.5
    max_sigma: float = 4.0
    existence_weight: float = 1.0
    class_weight: float = 1.0
    position_weight: float = 1.0
    velocity_weight: float = 0.5
    heading_weight: float = 0.5
    size_weight: float = 1.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ConfigError(f"LossConfig.{name}: expected a finite number >= 0, got {value!r}")
        if not 0 < self.min_sigma <= self.max_sigma:
            raise ConfigError(
                f"LossConfig.min_sigma: expected in (0, max_sigma={self.max_sigma}], got {self.min_sigma!r}"
            )


@dataclass(frozen=True)
class Targets(TensorContract):
    """Dense and per-object targets on the G x G grid.

    Attributes:
        heatmap: [B, G, G] float in [0, 1], Gaussian-splatted centres; exactly 1 at centre cells.
        cell: [B, M] long, grid cell (i G + j) of each object's centre (0 where not `mask`).
        mask: [B, M] bool, the object is a regression target: valid, visible, inside
            the raster and the nearest to its cell's centre among such objects.
        position: [B, M, 2] float, box centre, m, ego frame.
        velocity: [B, M, 2] float, m/s, ego frame.
        heading: [B, M] float, rad, ego frame.
        size: [B, M, 2] float > 0, (length, width), m.
        kind: [B, M] long, `AgentKind`.
    """

    heatmap: Tensor = spec(("B", "G", "G"), prob=True)
    cell: Tensor = spec(("B", "M"), "long", low=0)
    mask: Tensor = spec(("B", "M"), "bool")
    position: Tensor = spec(("B", "M", 2))
    velocity: Tensor = spec(("B", "M", 2))
    heading: Tensor = spec(("B", "M"))
    size: Tensor = spec(("B", "M", 2), low=0.0)
    kind: Tensor = spec(("B", "M"), "long", low=0, high=NUM_CLASSES - 1)

    MASK_FIELD = "mask"


def _nearest_per_cell(cell: Tensor, distance: Tensor, usable: Tensor) -> Tensor:
    """[B, M] bool: usable objects that are the nearest to their cell's centre (ties: lowest slot)."""
    M = cell.shape[1]
    slot = torch.arange(M, device=cell.device)
    same_cell = (cell.unsqueeze(2) == cell.unsqueeze(1)) & usable.unsqueeze(1) & usable.unsqueeze(2)  # (B, M, M)
    # [b, i, j]: object j beats object i when it is nearer, or as near with a lower slot.
    nearer = distance.unsqueeze(1) < distance.unsqueeze(2)
    tie = (distance.unsqueeze(1) == distance.unsqueeze(2)) & (slot.reshape(1, 1, M) < slot.reshape(1, M, 1))
    beaten = (same_cell & (nearer | tie)).any(dim=2)
    return usable & ~beaten


def _heatmap(row: Tensor, col: Tensor, sigma: Tensor, usable: Tensor, grid: int) -> Tensor:
    """[B, G, G]: max over objects of exp(-d^2 / 2 sigma^2), d in cells from the object's cell."""
    B = row.shape[0]
    ticks = torch.arange(grid, dtype=sigma.dtype, device=sigma.device)
    d_row = ticks.reshape(1, 1, grid, 1) - row.to(sigma.dtype).reshape(B, -1, 1, 1)  # (B, M, G, 1)
    d_col = ticks.reshape(1, 1, 1, grid) - col.to(sigma.dtype).reshape(B, -1, 1, 1)  # (B, M, 1, G)
    heat = torch.exp(-(d_row**2 + d_col**2) / (2 * sigma.reshape(B, -1, 1, 1) ** 2))  # (B, M, G, G)
    heat = heat * usable.reshape(B, -1, 1, 1).to(heat.dtype)
    empty = torch.zeros(B, 1, grid, grid, dtype=heat.dtype, device=heat.device)  # M may be 0
    return torch.cat((empty, heat), dim=1).amax(dim=1)


def make_targets(labels: ObjectList, raster: RasterConfig, stride: int, cfg: LossConfig = LossConfig()) -> Targets:
    """Targets from ground truth in the ego frame; only valid, visible objects inside the raster count.

    Every such object is splatted into the heatmap; where several share a grid
    cell, the one nearest the cell centre is that cell's regression target.
    """
    if raster.size % stride != 0:
        raise ValueError(f"make_targets.stride: expected a divisor of raster.size={raster.size}, got {stride!r}")
    G, cell_m = raster.size // stride, stride * raster.resolution
    row, col, inside = ego_xy_to_cell(labels.xy, raster)  # (B, M) raster cells
    usable = labels.valid & labels.visible & inside
    g_row = torch.where(usable, torch.div(row, stride, rounding_mode="floor"), 0)
    g_col = torch.where(usable, torch.div(col, stride, rounding_mode="floor"), 0)
    cell = g_row * G + g_col  # (B, M)
    centres = cell_centres(G, raster, stride, labels.xy.dtype, labels.xy.device)  # (G G, 2)
    distance = (labels.xy - centres[cell]).norm(dim=-1)  # (B, M) m
    size = torch.stack((labels.length, labels.width), dim=-1).clamp_min(1e-2)  # (B, M, 2)
    sigma = (cfg.sigma_per_diagonal * size.norm(dim=-1) / cell_m).clamp(cfg.min_sigma, cfg.max_sigma)
    return Targets(
        heatmap=_heatmap(g_row, g_col, sigma, usable, G),
        cell=cell,
        mask=_nearest_per_cell(cell, distance, usable),
        position=labels.xy,
        velocity=labels.velocity,
        heading=labels.yaw,
        size=size,
        kind=labels.kind,
    )


def focal_loss(logit: Tensor, heatmap: Tensor, alpha: float, beta: float) -> Tensor:
    """[B] summed penalty-reduced focal loss (CenterNet) of existence logits [B, G, G]."""
    positive = heatmap >= 1.0
    log_p, log_not_p = F.logsigmoid(logit), F.logsigmoid(-logit)
    p = torch.sigmoid(logit)
    pos = -((1 - p) ** alpha) * log_p
    neg = -((1 - heatmap) ** beta) * p**alpha * log_not_p
    return torch.where(positive, pos, neg).flatten(1).sum(1)


def gaussian_nll(value: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """[...] negative log density of `value [..., 2]` under N(mean, cov [..., 2, 2]) (closed form; the
    determinant is floored at 1e-12 so a near-singular covariance gives a large, finite value)."""
    a, b, d = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    det = (a * d - b * b).clamp_min(1e-12)
    r = value - mean
    mahalanobis = (d * r[..., 0] ** 2 - 2 * b * r[..., 0] * r[..., 1] + a * r[..., 1] ** 2) / det
    return 0.5 * (mahalanobis + torch.log(det)) + LOG_2PI


def von_mises_nll(angle: Tensor, location: Tensor, concentration: Tensor) -> Tensor:
    """[...] negative log density of `angle` under von Mises(location, concentration)."""
    log_i0 = torch.log(torch.special.i0e(concentration)) + concentration  # stable log I0
    return -concentration * torch.cos(angle - location) + LOG_2PI + log_i0


def _object_terms(at: Candidates, logits: Tensor, targets: Targets) -> dict[str, Tensor]:
    """Per-object [B, M] loss terms at the target cells."""
    return {
        "class": F.cross_entropy(logits, targets.kind, reduction="none"),
        "position": gaussian_nll(targets.position, at.position, at.position_cov),
        "velocity": gaussian_nll(targets.velocity, at.velocity, at.velocity_cov),
        "heading": von_mises_nll(targets.heading, at.heading, at.concentration),
        "size": (torch.log(at.size) - torch.log(targets.size)).abs().sum(-1),
    }


def supervised_loss(
    out: DenseOutput,
    targets: Targets,
    raster: RasterConfig,
    stride: int,
    labeled: Tensor | None = None,
    cfg: LossConfig = LossConfig(),
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the terms, and each term (detached) by name plus "total".

    `labeled [B]` bool marks frames with labels; the others contribute nothing
    (a batch may mix labeled and unlabeled frames). The focal loss is
    normalised by the number of centre cells, the object terms by the number
    of target objects, both over labeled frames (at least 1).
    """
    B = out.existence_logit.shape[0]
    if labeled is None:
        labeled = torch.ones(B, dtype=torch.bool, device=out.existence_logit.device)
    if labeled.shape != (B,) or labeled.dtype != torch.bool:
        raise ValueError(f"supervised_loss.labeled: expected a bool tensor of shape ({B},), got {labeled!r}")
    weight = labeled.to(out.existence_logit.dtype)  # (B,)
    positives = ((targets.heatmap >= 1.0).flatten(1).sum(1) * weight).sum().clamp_min(1.0)
    focal = focal_loss(out.existence_logit, targets.heatmap, cfg.focal_alpha, cfg.focal_beta)  # (B,)
    parts = {"existence": (focal * weight).sum() / positives}
    object_weight = (targets.mask & labeled.unsqueeze(1)).to(weight.dtype)  # (B, M)
    count = object_weight.sum().clamp_min(1.0)
    at = dense_candidates(out, raster, stride).at(targets.cell)  # (B, M) candidates
    cells = targets.cell.unsqueeze(1).expand(-1, NUM_CLASSES, -1)  # (B, 3, M)
    class_logits = torch.gather(out.class_logits.flatten(2), 2, cells)  # (B, 3, M)
    for name, per_object in _object_terms(at, class_logits, targets).items():
        # where(), not a product: a term at a non-target cell may be inf, and inf * 0 is NaN.
        parts[name] = torch.where(object_weight > 0, per_object, 0.0).sum() / count
    weights = {
        "existence": cfg.existence_weight,
        "class": cfg.class_weight,
        "position": cfg.position_weight,
        "velocity": cfg.velocity_weight,
        "heading": cfg.heading_weight,
        "size": cfg.size_weight,
    }
    total = sum(weights[name] * value for name, value in parts.items())
    report = {name: value.detach() for name, value in parts.items()}
    report["total"] = total.detach()
    return total, report
