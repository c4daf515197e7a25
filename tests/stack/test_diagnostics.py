"""The diagnostic policies: the stack's planner on ground truth and on the object sensor, PDM on the
stack's perception."""

from __future__ import annotations

import math

import pytest
import torch

from perception.model import PerceptionConfig
from sim.config import RasterConfig
from sim.policies import make_policy
from sim.runner import observe, rollout
from sim.scenarios import build_batch, load_scenario, scenario_path
from stack.config import StackConfig
from stack.diagnostics import GroundTruthStack, ObjectListStack, PDMOnStackPerception
from stack.model import Stack
from tests.sim.sensor_worlds import Box, sensor_world, straight_road

RASTER = RasterConfig(size=32, resolution=1.0)


@pytest.fixture(scope="module")
def stack():
    torch.manual_seed(0)
    return Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER))).eval()


def _world(boxes):
    world = sensor_world([boxes], ego_centre=(10.0, -5.0), ego_yaw=0.3)
    start = (10.0 - 30 * math.cos(0.3), -5.0 - 30 * math.sin(0.3))
    return straight_road(world, start=start, heading=0.3, length=200.0, road_width=7.0, speed_limit=15.0)


def test_the_planner_on_ground_truth_stops_for_what_ground_truth_holds(stack):
    policy = GroundTruthStack(stack)
    state = None
    world = _world([Box(x=14.0, y=0.0)])
    for _ in range(3):  # the tracker needs a few frames to believe in the vehicle
        out, state = policy.act(state, observe(world, policy, RASTER))
    assert out.speeds[0, -1] < 1.0 and bool(state.plan.valid.all())
    drawn = out.overlay  # rendered episodes show what it believed, forecast and weighed, as the stack's do
    assert drawn.objects_prob[0].max() > 0.5 and drawn.forecasts is not None and drawn.candidates is not None
    assert torch.allclose(drawn.candidate_weights.sum(-1), torch.ones(1))
    clear, _ = GroundTruthStack(stack).act(None, observe(_world([]), policy, RASTER))
    assert clear.speeds[0, -1] > 5.0


def test_every_diagnostic_drives_a_short_episode_and_reads_only_what_it_declares(stack):
    scenario = load_scenario(scenario_path("cut_in")).with_overrides({"duration": 1.0})
    for policy in (GroundTruthStack(stack), ObjectListStack(stack), PDMOnStackPerception(stack)):
        world = build_batch(scenario, [0, 1])
        _, metrics, errors = rollout(world, policy, 10, raster=RASTER)
        assert errors == [None, None] and torch.isfinite(metrics["progress"]).all()
    assert ObjectListStack.inputs == {"detections"} and GroundTruthStack.inputs == {"ground_truth"}
    assert PDMOnStackPerception.inputs == frozenset()


def test_the_diagnostics_are_registered_policies(stack, tmp_path):
    path = stack.save(tmp_path / "tiny.safetensors")
    for name, kind in (("stack-gt", GroundTruthStack), ("stack-objects", ObjectListStack),
                       ("pdm-stack", PDMOnStackPerception)):  # fmt: skip
        assert isinstance(make_policy(name, weights=path), kind)
