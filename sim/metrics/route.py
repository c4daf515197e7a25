"""The ego's route as one polyline per episode, and the clear-corridor check on it.

Gathering the route once as `[B, P]` arrays keeps the per-agent work small: agents
are measured against a short corridor of `Q` points sampled ahead of the ego
(`[B, N, Q]`), never against every point of the route (`[B, N, P]`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.state import RoadMap


@dataclass(frozen=True)
class Route:
    """The ego route of each episode.

    Attributes:
        xy: [B, P, 2] centreline points, m. s: [B, P] arc length, m.
        length: [B] m. speed_limit: [B] m/s.
    """

    xy: Tensor
    s: Tensor
    length: Tensor
    speed_limit: Tensor

    @classmethod
    def of(cls, roadmap: RoadMap, route: Tensor) -> Route:
        """Rows `route [B]` of the map's paths."""
        B, _, P = roadmap.path_s.shape
        idx = route.clamp_min(0)
        xy = torch.gather(roadmap.path_xy, 1, idx.view(B, 1, 1, 1).expand(B, 1, P, 2)).squeeze(1)
        s = torch.gather(roadmap.path_s, 1, idx.view(B, 1, 1).expand(B, 1, P)).squeeze(1)
        length = torch.gather(roadmap.path_length, 1, idx[:, None]).squeeze(1)
        limit = torch.gather(roadmap.path_speed_limit, 1, idx[:, None]).squeeze(1)
        return cls(xy=xy, s=s, length=length, speed_limit=limit)

    def points_at(self, s: Tensor) -> Tensor:
        """Centreline points [B, Q, 2] at arc lengths `s [B, Q]`, clamped to the route."""
        P = self.s.shape[-1]
        s = torch.minimum(s.clamp_min(0.0), self.length[:, None])
        i = (torch.searchsorted(self.s.contiguous(), s.contiguous(), right=True) - 1).clamp(0, P - 2)  # (B, Q)
        s0 = torch.gather(self.s, 1, i)
        s1 = torch.gather(self.s, 1, i + 1)
        frac = ((s - s0) / (s1 - s0).clamp_min(1e-6)).clamp(0.0, 1.0)
        p0 = torch.gather(self.xy, 1, i[..., None].expand(*i.shape, 2))
        p1 = torch.gather(self.xy, 1, (i + 1)[..., None].expand(*i.shape, 2))
        return p0 + (p1 - p0) * frac[..., None]

    def project(self, xy: Tensor) -> Tensor:
        """Arc length [B] of the points `xy [B, 2]` projected on the route, m.

        The exact nearest-segment projection of `sim.geometry.project_to_path`,
        on the already gathered route (no second gather of the map's paths).
        """
        ax, ay = self.xy[:, :-1, 0], self.xy[:, :-1, 1]  # (B, P-1)
        abx, aby = self.xy[:, 1:, 0] - ax, self.xy[:, 1:, 1] - ay
        rx, ry = xy[:, 0, None] - ax, xy[:, 1, None] - ay
        t = ((rx * abx + ry * aby) / (abx * abx + aby * aby).clamp_min(1e-9)).clamp(0.0, 1.0)
        ex, ey = rx - abx * t, ry - aby * t
        j = (ex * ex + ey * ey).argmin(-1, keepdim=True)  # (B, 1)
        s0 = torch.gather(self.s[:, :-1], 1, j)
        s1 = torch.gather(self.s[:, 1:], 1, j)
        return (s0 + (s1 - s0) * torch.gather(t, 1, j)).squeeze(1)


def nearest_on_polyline(poly: Tensor, pts: Tensor) -> tuple[Tensor, Tensor]:
    """Distance [B, N] from `pts [B, N, 2]` to the polyline `poly [B, Q, 2]`, and the unit
    direction [B, N, 2] of the nearest segment (zero for a degenerate polyline)."""
    ax, ay = poly[:, None, :-1, 0], poly[:, None, :-1, 1]  # (B, 1, Q-1)
    abx, aby = poly[:, None, 1:, 0] - ax, poly[:, None, 1:, 1] - ay
    inv_len2 = 1.0 / (abx * abx + aby * aby).clamp_min(1e-12)
    rx, ry = pts[..., 0, None] - ax, pts[..., 1, None] - ay  # (B, N, Q-1)
    t = ((rx * abx + ry * aby) * inv_len2).clamp(0.0, 1.0)
    ex, ey = rx - abx * t, ry - aby * t
    best, j = (ex * ex + ey * ey).min(-1)  # (B, N)
    seg = torch.stack((abx, aby), dim=-1).squeeze(1)  # (B, Q-1, 2)
    idx = j[..., None].expand(*j.shape, 2)
    direction = torch.gather(seg, 1, idx)  # (B, N, 2)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return best.sqrt(), direction
