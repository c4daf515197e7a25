"""Planar geometry helpers shared by the simulator and the baselines."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.geometry import (
    box_corners,
    boxes_overlap,
    interpolate_polyline,
    local_to_world,
    obb_overlap,
    plan_heading,
    project_to_polyline,
    world_to_local,
)

coord = st.floats(-8.0, 8.0)
angle = st.floats(-math.pi, math.pi)
size = st.floats(0.3, 6.0)


@settings(max_examples=300, deadline=None)
@given(coord, coord, angle, size, size, coord, coord, angle, size, size)
def test_obb_overlap_matches_corner_sat(xa, ya, ta, la, wa, xb, yb, tb, lb, wb):
    a = (torch.tensor([xa, ya]), torch.tensor(ta), torch.tensor(la), torch.tensor(wa))
    b = (torch.tensor([xb, yb]), torch.tensor(tb), torch.tensor(lb), torch.tensor(wb))
    fast = bool(obb_overlap(*a, *b))
    reference = bool(boxes_overlap(box_corners(*a), box_corners(*b)))
    # The two formulations may round differently only when the boxes just touch.
    if fast != reference:
        grown = bool(boxes_overlap(box_corners(a[0], a[1], a[2] + 1e-3, a[3] + 1e-3), box_corners(*b)))
        shrunk = bool(boxes_overlap(box_corners(a[0], a[1], a[2] - 1e-3, a[3] - 1e-3), box_corners(*b)))
        assert grown != shrunk


def test_obb_overlap_broadcasts():
    xy = torch.tensor([[0.0, 0.0], [10.0, 0.0], [2.0, 1.0]])  # (3, 2)
    hits = obb_overlap(
        xy[:, None],
        torch.zeros(3, 1),
        torch.full((3, 1), 4.0),
        torch.full((3, 1), 2.0),
        xy[None],
        torch.zeros(1, 3),
        torch.full((1, 3), 4.0),
        torch.full((1, 3), 2.0),
    )
    assert hits.shape == (3, 3)
    assert hits.diagonal().all() and bool(hits[0, 2]) and not bool(hits[0, 1])


@given(coord, coord, angle, coord, coord)
def test_world_local_round_trip(ox, oy, yaw, px, py):
    origin, heading = torch.tensor([[ox, oy]]), torch.tensor([yaw])
    point = torch.tensor([[[px, py]]])
    back = local_to_world(world_to_local(point, origin, heading), origin, heading)
    assert torch.allclose(back, point, atol=1e-4)


def test_polyline_projection_and_interpolation_agree():
    theta = torch.linspace(0, math.pi / 2, 50)
    arc = torch.stack((20 * torch.sin(theta), 20 * (1 - torch.cos(theta))), dim=-1)  # left turn, radius 20 m
    s_table = torch.cat((torch.zeros(1), (arc[1:] - arc[:-1]).norm(dim=-1).cumsum(0)))
    s = torch.tensor([3.0, 12.5, 25.0])
    xy, yaw = interpolate_polyline(arc.expand(3, -1, -1), s_table.expand(3, -1), s)
    s_back, lateral = project_to_polyline(arc.expand(3, -1, -1), s_table.expand(3, -1), xy)
    assert torch.allclose(s_back, s, atol=1e-3) and lateral.abs().max() < 1e-3
    assert (yaw.diff() > 0).all()  # heading turns left along the arc


def test_plan_heading_carries_on_through_stops():
    plan = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 1.0]]])
    assert torch.allclose(plan_heading(plan), torch.tensor([[0.0, math.pi / 2, math.pi / 2, math.pi]]))
    standing = torch.zeros(1, 3, 2)
    assert torch.equal(plan_heading(standing), torch.zeros(1, 3))
