"""Step metrics on hand-built geometry: collisions and fault, TTC, drivable area, registry."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from sim import geometry
from sim.metrics import EpisodeAccumulator, StepMetric, StepMetrics, get_metric, metric_names, register_metric
from sim.metrics.config import MetricsConfig
from sim.metrics.context import StepContext
from sim.metrics.worlds import random_world
from sim.state import AgentKind, Behaviour
from tests.sim.metric_worlds import EGO_LENGTH, REAR_OVERHANG, accumulate, set_agent, set_ego, world

EGO_FRONT = 10.0 - REAR_OVERHANG + EGO_LENGTH  # ego rear axle at x = 10
EGO_REAR = 10.0 - REAR_OVERHANG


def step_values(name, w, prev=None):
    return get_metric(name).compute(prev if prev is not None else w, w)


# -- collisions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y", "touching"),
    [
        (EGO_FRONT + 2.0 - 0.1, 0.0, True),  # 4 m agent overlapping the front bumper by 0.1 m
        (EGO_FRONT + 2.0 + 0.1, 0.0, False),
        (EGO_REAR - 2.0 + 0.1, 0.0, True),  # the rear bumper is 0.9 m behind the rear axle
        (EGO_REAR - 2.0 - 0.1, 0.0, False),
        (11.4, 1.9 - 0.05, True),  # alongside, overlapping the left side by 5 cm
        (11.4, 1.9 + 0.05, False),
    ],
)
def test_contact_uses_the_box_centred_ahead_of_the_rear_axle(x, y, touching):
    w = set_agent(world(), 0, x, y, length=4.0, width=1.9)
    contact = step_values("collision", w)["contact"]
    assert contact[0].tolist() == [touching, False, False, False]


def test_invalid_agents_never_touch():
    w = set_agent(world(), 1, 12.0, 0.0, valid=False)
    assert not bool(step_values("collision", w)["contact"].any())


def test_contact_agrees_with_geometry_sat_on_random_boxes():
    w = random_world(16, 32, seed=3)
    a = w.agents
    centre = geometry.ego_center(w.ego)
    offset = a.xy - torch.tensor([50.0, 0.0])  # the agents spread +-40 m by +-10 m around (50, 0)
    near = centre[:, None] + offset * torch.tensor([0.12, 0.5])  # crowd them around the ego
    w = set_ego(w, yaw=0.3)
    w = dataclasses.replace(w, agents=dataclasses.replace(a, xy=near))
    contact = step_values("collision", w)["contact"]
    agents = geometry.box_corners(w.agents.xy, w.agents.yaw, w.agents.length, w.agents.width)
    expected = geometry.boxes_overlap(geometry.ego_corners(w.ego)[:, None].expand_as(agents), agents)
    assert 50 < int(expected.sum()) < expected.numel() - 50  # both outcomes well represented
    assert torch.equal(contact, expected)


def _first_contact(w, ego_speed):
    w = set_ego(w, speed=ego_speed)
    return step_values("collision", w)


def test_ego_hitting_a_stopped_car_is_at_fault():
    w = set_agent(world(), 0, EGO_FRONT + 2.0, 0.0, length=4.0, speed=0.0)
    v = _first_contact(w, 5.0)
    assert bool(v["contact"][0, 0]) and bool(v["contact_at_fault"][0, 0])


def test_rear_end_by_another_car_is_not_at_fault():
    w = set_agent(world(), 0, EGO_REAR - 2.0 + 0.2, 0.0, length=4.0, speed=8.0)
    v = _first_contact(w, 5.0)
    assert bool(v["contact"][0, 0]) and not bool(v["contact_at_fault"][0, 0])


def test_rear_contact_with_a_car_that_is_not_closing_in_is_at_fault():
    # The car behind is slower than the ego, so it is not the one hitting: the rear
    # exemption needs the other agent to close in.
    w = set_agent(world(), 0, EGO_REAR - 2.0 + 0.2, 0.0, length=4.0, speed=2.0)
    assert bool(_first_contact(w, 5.0)["contact_at_fault"][0, 0])


def test_stopped_ego_is_never_at_fault():
    w = set_agent(world(), 0, EGO_FRONT + 2.0 - 0.2, 0.0, yaw=math.pi, length=4.0, speed=5.0)
    v = _first_contact(w, 0.0)
    assert bool(v["contact"][0, 0]) and not bool(v["contact_at_fault"][0, 0])


def test_long_contact_counts_once_and_each_agent_once():
    w = set_agent(world(), 0, EGO_FRONT + 2.0 - 0.2, 0.0, length=4.0, behaviour=Behaviour.STATIC)
    w = set_ego(w, speed=3.0)
    later = set_agent(w, 1, 11.4, 1.2, kind=AgentKind.PEDESTRIAN, length=0.6, width=0.6)
    results = accumulate([w] * 10 + [later] * 5)
    assert int(results["collisions"]) == 2
    assert int(results["at_fault_static"]) == 1 and int(results["at_fault_pedestrian"]) == 1
    assert int(results["at_fault_vehicle"]) == 0 and int(results["at_fault_collisions"]) == 2
    assert bool(results["collided"])
    assert float(results["min_ttc"]) == 0.0  # nuPlan: TTC is 0 at an at-fault collision


def test_contact_leaving_and_returning_still_counts_once():
    touching = set_ego(set_agent(world(), 0, EGO_FRONT + 1.8, 0.0, length=4.0), speed=3.0)
    apart = set_agent(touching, 0, EGO_FRONT + 5.0, 0.0, length=4.0)
    results = accumulate([apart, touching, apart, touching, touching])
    assert int(results["collisions"]) == 1


def test_not_at_fault_contact_is_counted_but_does_not_mark_collided():
    w = set_ego(set_agent(world(), 0, EGO_REAR - 1.8, 0.0, length=4.0, speed=8.0), speed=5.0)
    results = accumulate([w, w, w])
    assert int(results["collisions"]) == 1 and int(results["at_fault_collisions"]) == 0
    assert not bool(results["collided"])


# -- time to collision ---------------------------------------------------------


def test_ttc_head_on_at_closing_speed_20_from_40_m():
    w = set_ego(world(), speed=10.0)
    centre_x = 10.0 + 2.8 / 2
    w = set_agent(w, 0, centre_x + 40.0, 0.0, yaw=math.pi, speed=10.0, length=EGO_LENGTH)
    ttc = float(step_values("ttc", w)["ttc"][0])
    assert abs(ttc - (40.0 - EGO_LENGTH) / 20.0) <= 0.1
    assert math.isclose(ttc, 1.8, abs_tol=1e-5)  # the first 0.1 s step after 1.77 s


def test_ttc_is_capped_when_nothing_is_in_the_way_or_the_ego_stands():
    cap = MetricsConfig().ttc.cap
    w = set_ego(world(), speed=10.0)
    assert float(step_values("ttc", w)["ttc"][0]) == cap
    ahead = set_agent(w, 0, 30.0, 0.0, speed=0.0)
    assert float(step_values("ttc", ahead)["ttc"][0]) < 3.0
    stopped = set_ego(ahead, speed=0.0)
    assert float(step_values("ttc", stopped)["ttc"][0]) == cap


def test_ttc_ignores_agents_behind_and_agents_already_touching():
    w = set_ego(world(), speed=2.0)
    behind = set_agent(w, 0, -5.0, 0.0, speed=12.0)  # will run into the ego, but from behind
    assert float(step_values("ttc", behind)["ttc"][0]) == MetricsConfig().ttc.cap
    touching = set_agent(w, 1, EGO_FRONT + 1.9, 0.0, length=4.0)
    assert float(step_values("ttc", touching)["ttc"][0]) == MetricsConfig().ttc.cap


def test_ttc_sweep_matches_stepping_the_boxes_forward():
    """The analytic sweep equals nuPlan's procedure: move both boxes 0.1 s at a time and SAT-test."""
    w = random_world(8, 32, seed=11)
    ctx = StepContext(w, w, MetricsConfig())
    analytic = ctx.sweep.first_hit(0.1, 30)  # (B, N)
    t = torch.arange(1, 31, dtype=torch.float32) * 0.1  # (K,)
    ego_c = ctx.ego_center[:, None] + ctx.ego_velocity[:, None] * t[None, :, None]  # (B, K, 2)
    ego_box = geometry.box_corners(
        ego_c,
        w.ego.yaw[:, None].expand(-1, 30),
        w.ego.length[:, None].expand(-1, 30),
        w.ego.width[:, None].expand(-1, 30),
    )
    a = w.agents
    xy = a.xy[:, None] + ctx.agent_velocity[:, None] * t[None, :, None, None]  # (B, K, N, 2)
    boxes = geometry.box_corners(
        xy,
        a.yaw[:, None].expand_as(xy[..., 0]),
        a.length[:, None].expand_as(xy[..., 0]),
        a.width[:, None].expand_as(xy[..., 0]),
    )
    hit = geometry.boxes_overlap(ego_box[:, :, None].expand_as(boxes), boxes)  # (B, K, N)
    first = torch.where(hit.any(1), t[hit.float().argmax(1)], torch.full_like(analytic, float("inf")))
    assert int(torch.isfinite(first).sum()) >= 10
    assert torch.allclose(analytic, first)


# -- drivable area -------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y", "ok"),
    [(10.0, 0.0, True), (10.0, 4.0, True), (10.0, 4.5, False), (10.0, -4.5, False), (-100.0, 0.0, False)],
)
def test_drivable_needs_all_four_corners_on_drivable_cells(x, y, ok):
    w = set_ego(world(), x=x, y=y)
    assert bool(step_values("drivable_area", w)["drivable"][0]) is ok


def test_drivable_compliance_is_false_once_any_step_leaves_the_road():
    on = world()
    off = set_ego(on, y=4.5)
    assert bool(accumulate([on, on, on])["drivable_area_compliance"])
    assert not bool(accumulate([on, off, on])["drivable_area_compliance"])


# -- registry and accumulator plumbing ------------------------------------------


def test_registry_names_and_lookup():
    assert set(metric_names()) >= {"collision", "ttc", "drivable_area", "comfort", "speed_limit", "frozen", "progress"}
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        get_metric("nope")


def test_registering_a_second_metric_under_a_taken_name_fails():
    class Clash(StepMetric):
        name = "ttc"
        outputs = ("x",)

        def _compute(self, ctx):
            return {"x": ctx.state.ego.speed}

    with pytest.raises(ValueError, match="already registered"):
        register_metric(Clash)


def test_step_metrics_subset_returns_only_their_outputs():
    w = world(batch=3)
    values = StepMetrics(["ttc", "speed_limit"]).compute(w, w)
    assert set(values) == {"ttc", "overspeed", "speed_limit"}
    assert all(v.shape == (3,) for v in values.values())


def test_accumulator_checks_shapes_and_dt_and_honours_active():
    w = set_ego(world(batch=2), speed=5.0)
    acc = EpisodeAccumulator.init(2, 4, "cpu")
    acc = acc.update(w, w, active=torch.tensor([True, False]))
    assert acc.steps.tolist() == [1, 0]
    with pytest.raises(ValueError, match="dt"):
        acc.update(w, dataclasses.replace(w, dt=0.2))
    with pytest.raises(ValueError, match="episodes x agents"):
        acc.update(world(batch=3), world(batch=3))
