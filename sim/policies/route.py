"""Objects in route coordinates for the IDM baseline (ego frame); the route geometry is `sim.proposals.route`'s."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.geometry import interpolate_polyline
from sim.proposals.route import project_onto_route, route_arclength
from sim.types import ObjectList, SensorFrame


@dataclass(frozen=True)
class RouteObjects:
    """Objects in route coordinates, [B, M] each, ego frame.

    Attributes:
        s: arc length along the route from the ego, m.
        lat: lateral offset from the route (left > 0), m.
        v_s: velocity along the route, m/s.
        v_lat: velocity across the route, m/s.
        half_length: m.
        half_width: m.
        use: bool, the object is believed to exist (ground truth, or score >= threshold).
    """

    s: Tensor
    lat: Tensor
    v_s: Tensor
    v_lat: Tensor
    half_length: Tensor
    half_width: Tensor
    use: Tensor


def objects_on_route(
    frame: SensorFrame, objects: ObjectList, threshold: float | None, time: float = 0.0
) -> RouteObjects:
    """Project objects, moved `time` s ahead at constant velocity, onto the route.

    `threshold` None keeps every valid object (ground truth); otherwise objects
    scoring below it are not believed.
    """
    route_s = route_arclength(frame)  # (B, R)
    M = objects.xy.shape[1]
    pts = frame.route.unsqueeze(1).expand(-1, M, -1, -1)  # (B, M, R, 2)
    table = route_s.unsqueeze(1).expand(-1, M, -1)  # (B, M, R)
    s, lat = project_onto_route(pts, table, objects.xy + objects.velocity * time)
    _, tangent = interpolate_polyline(pts, table, s)
    c, sn = torch.cos(tangent), torch.sin(tangent)
    vx, vy = objects.velocity[..., 0], objects.velocity[..., 1]
    use = objects.valid if threshold is None else objects.valid & (objects.score >= threshold)
    return RouteObjects(
        s=s,
        lat=lat,
        v_s=c * vx + sn * vy,
        v_lat=-sn * vx + c * vy,
        half_length=0.5 * objects.length,
        half_width=0.5 * objects.width,
        use=use,
    )
