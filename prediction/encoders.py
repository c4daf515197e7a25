"""The predictor's encoders: history, interaction (masked attention over neighbours), map, lanes, future.

All are batched over every agent of every scene at once: no Python loops over
agents or edge types, and no data-dependent control flow (exportable).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prediction.config import PredictorConfig
from prediction.features import EDGE_STEP_FEATURES, NODE_STATIC_FEATURES, NODE_STEP_FEATURES
from prediction.lanes import lane_directions
from sim.config import RasterConfig
from sim.sensors.raster import ego_to_cell, grid_sample_coords


def mlp(sizes: list[int], final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def add_attention(layer: nn.Module, hidden: int, width: int) -> None:
    """Give `layer` what `attend` reads (`query` from the agent's `hidden` encoding, `key`, `value`,
    `nobody_key`, `nobody_value`, `scale`, all `width` wide) and `out`, back to `hidden`."""
    layer.query = nn.Linear(hidden, width)
    layer.key = nn.Linear(width, width)
    layer.value = nn.Linear(width, width)
    layer.nobody_key = nn.Parameter(torch.zeros(width))
    layer.nobody_value = nn.Parameter(torch.zeros(width))
    layer.out = nn.Linear(width, hidden)
    layer.scale = 1.0 / math.sqrt(width)


def attend(layer: nn.Module, node: Tensor, tokens: Tensor, allowed: Tensor) -> Tensor:
    """Scaled dot-product attention of each agent `node [B, A, hidden]` over its `tokens [B, A, J, W]`
    where `allowed [B, A, J]`, plus a learned "nobody" slot that is always allowed (so the softmax is
    defined when nothing is); masked tokens get -inf logits, no influence at all. `layer` holds the
    weights (`add_attention`). -> [B, A, W]."""
    B, A = allowed.shape[:2]
    q = layer.query(node)
    keys = torch.cat((layer.key(tokens), layer.nobody_key.expand(B, A, 1, -1)), dim=2)  # [B, A, J+1, W]
    values = torch.cat((layer.value(tokens), layer.nobody_value.expand(B, A, 1, -1)), dim=2)
    logits = (keys * q[:, :, None, :]).sum(-1) * layer.scale
    everyone = torch.cat((allowed, torch.ones_like(allowed[..., :1])), dim=-1)
    weights = torch.softmax(logits.masked_fill(~everyone, float("-inf")), dim=-1)
    return (weights[..., None] * values).sum(dim=2)


class HistoryEncoder(nn.Module):
    """GRU over the H history steps of every agent -> [B, A, hidden] (state after the current step)."""

    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        self.gru = nn.GRU(NODE_STEP_FEATURES, cfg.hidden, batch_first=True)
        self.static = nn.Linear(NODE_STATIC_FEATURES, cfg.hidden)

    def forward(self, steps: Tensor, static: Tensor) -> Tensor:
        B, A, H, F_ = steps.shape
        _, last = self.gru(steps.reshape(B * A, H, F_))
        return last[0].reshape(B, A, -1) + self.static(static)


class InteractionEncoder(nn.Module):
    """Agent i attends over its neighbours j (and a learned "nobody" slot) -> [B, A, hidden].

    The nobody slot keeps the softmax defined for an agent alone in the scene and
    lets the model say "no one matters". Masked neighbours get -inf logits, so
    they have no influence at all (tested), and the weights are shared across
    pairs, so permuting agents permutes the outputs.
    """

    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        width = cfg.edge_hidden
        self.edge = mlp([cfg.history * EDGE_STEP_FEATURES + NODE_STATIC_FEATURES, width, width], final_activation=True)
        add_attention(self, cfg.hidden, width)

    def forward(self, node: Tensor, edges: Tensor, static: Tensor, neighbour: Tensor) -> Tensor:
        B, A = neighbour.shape[:2]
        neighbour_static = static[:, None, :, :].expand(B, A, A, static.shape[-1])
        e = self.edge(torch.cat((edges, neighbour_static), dim=-1))  # [B, i, j, W]
        return self.out(attend(self, node, e, neighbour))  # e: [B, i, j, W]


class MapEncoder(nn.Module):
    """A CNN over the map patch around each agent (axis-aligned with the raster's frame) -> [B, A, hidden].

    Patches are read from the ego-frame map raster `[B, C, R, R]` with bilinear
    `grid_sample` (zeros off the raster), one affine grid per agent.
    """

    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.map_channels
        self.cnn = nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, cfg.hidden),
        )
        offsets = (torch.arange(cfg.map_patch, dtype=torch.float32) + 0.5) / cfg.map_patch - 0.5
        self.register_buffer("offsets", offsets * cfg.map_patch_m, persistent=False)  # [P] m

    def patches(self, map_raster: Tensor, raster: RasterConfig, position: Tensor) -> Tensor:
        """[B, A, C, P, P] map cells around `position [B, A, 2]` (ego frame, m); patch rows run ahead to behind."""
        B, C, R, _ = map_raster.shape
        A, P = position.shape[1], self.cfg.map_patch
        ahead = position[..., 0, None] - self.offsets  # [B, A, P] x of each patch row (first row = farthest ahead)
        left = position[..., 1, None] - self.offsets  # [B, A, P] y of each patch column
        u, v = grid_sample_coords(*ego_to_cell(ahead, left, raster), R, R)  # normalised column, row
        grid = torch.stack((u[:, :, None, :].expand(B, A, P, P), v[:, :, :, None].expand(B, A, P, P)), dim=-1)
        image = map_raster.float()[:, None].expand(B, A, C, R, R).reshape(B * A, C, R, R)
        out = F.grid_sample(image, grid.reshape(B * A, P, P, 2), mode="bilinear", align_corners=False)
        return out.reshape(B, A, C, P, P)

    def forward(self, map_raster: Tensor, raster: RasterConfig, position: Tensor) -> Tensor:
        patches = self.patches(map_raster, raster, position)
        B, A = patches.shape[:2]
        return self.cnn(patches.flatten(0, 1)).reshape(B, A, -1)


LANE_POINT_FEATURES = 4  # position relative to the agent 2, direction of travel 2


class LaneEncoder(nn.Module):
    """Each agent attends over the lanes near it (and a learned "no lane" slot) -> [B, A, hidden].

    A lane seen from an agent is a PointNet over its points (position relative to
    the agent, scaled by `lane_radius`, and direction of travel): one linear layer,
    max-pooled over the points, then an MLP. The layer is linear in the position
    and the agent's position is the same for every point, so max_p W (p - x) =
    max_p W p - W x: the pool runs once per lane and is shifted per agent (per
    feature, how far the lane reaches along a learned direction beyond the
    agent), instead of once per (agent, point) pair.
    Lanes with no point within `lane_radius` of the agent, and missing points,
    have no influence (masked, tested); the "no lane" slot keeps the softmax
    defined for an agent far from every lane (a pedestrian on ETH/UCY).
    """

    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        width = cfg.edge_hidden
        self.radius = cfg.lane_radius
        self.point = nn.Linear(LANE_POINT_FEATURES, width)
        self.lane = mlp([width, width, width], final_activation=True)
        add_attention(self, cfg.hidden, width)

    def forward(self, node: Tensor, position: Tensor, lanes: Tensor, lanes_valid: Tensor) -> Tensor:
        """`node [B, A, hidden]` queries at `position [B, A, 2]`; `lanes [B, N, P, 2]`, `lanes_valid [B, N, P]`."""
        lanes = torch.where(lanes_valid[..., None], lanes, torch.zeros_like(lanes))  # masked points may hold NaN
        features = torch.cat((lanes / self.radius, lane_directions(lanes, lanes_valid)), dim=-1)
        per_point = self.point(features).masked_fill(~lanes_valid[..., None], float("-inf"))  # [B, N, P, W]
        shift = (position / self.radius) @ self.point.weight[:, :2].transpose(0, 1)  # [B, A, W]
        pooled = per_point.amax(dim=2)[:, None] - shift[:, :, None, :]  # [B, A, N, W], max_p W (p - x)
        pooled = torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled))
        token = self.lane(F.relu(pooled))
        gap = (lanes[:, None] - position[:, :, None, None, :]).square().sum(-1)  # [B, A, N, P]
        near = (lanes_valid[:, None] & (gap <= self.radius**2)).any(dim=-1)  # [B, A, N]
        return self.out(attend(self, node, token, near))


class FutureEncoder(nn.Module):
    """The true future (training only) -> [B, A, hidden], input of the posterior q(z | x, y).

    Reads positions relative to the current one and their backward-difference
    velocities over the T future steps; missing steps are zero with a flag.
    """

    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        self.cfg = cfg
        self.net = mlp([cfg.horizon * 5, cfg.hidden, cfg.hidden], final_activation=True)

    def forward(self, future: Tensor, future_valid: Tensor, now: Tensor) -> Tensor:
        cfg = self.cfg
        path = torch.cat((now[:, :, None, :], future), dim=2)  # [B, A, T + 1, 2]
        seen = torch.cat((torch.ones_like(future_valid[..., :1]), future_valid), dim=-1)
        velocity = (path[:, :, 1:] - path[:, :, :-1]) / cfg.dt
        velocity = torch.where((seen[..., 1:] & seen[..., :-1])[..., None], velocity, torch.zeros_like(velocity))
        rel = (future - now[:, :, None, :]) / cfg.position_scale
        step = torch.cat((rel, velocity / cfg.velocity_scale, torch.ones_like(rel[..., :1])), dim=-1)
        step = torch.where(future_valid[..., None], step, torch.zeros_like(step))
        return self.net(step.flatten(2))
