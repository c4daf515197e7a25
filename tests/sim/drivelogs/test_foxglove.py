"""The Foxglove channels of a drive log: Foxglove's schemas, decodable from the file alone, showing what was
simulated and what the policy believed, in the right frames."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from mcap.reader import make_reader

from sim.config import RasterConfig
from sim.drawing import MIN_DRAWN_EXISTENCE, MIN_DRAWN_MODE_WEIGHT
from sim.drivelogs.format import DriveLogWriter, read_drive
from sim.drivelogs.foxglove import (
    CANDIDATE_QUANTUM_M,
    CHANNELS,
    EGO_FRAME,
    LINE_QUANTUM_M,
    RASTER_EVERY,
    RASTER_TOPICS,
    WORLD_FRAME,
    grid_origin,
    map_rgba,
    raster_grid,
)
from sim.drivelogs.index import build_index
from sim.drivelogs.recorder import drive_recorder
from sim.geometry import ego_center
from sim.policies import Observation, PolicyOutput, make_policy
from sim.runner import rollout
from sim.scenarios import build_batch, load_scenario, scenario_path
from sim.sensors.raster import ego_to_cell

STEPS = 6
RASTER = RasterConfig(size=48, resolution=1.0)
MODE_WEIGHTS = (0.69, 0.3, 0.01)  # the third mode is below MIN_DRAWN_MODE_WEIGHT


class Believer:
    """pdm-gt (its candidates and plan) exposing an overlay known exactly: the true agents as believed
    objects with existence rising by slot from 0.01 (some below `MIN_DRAWN_EXISTENCE`) and an anisotropic,
    rotated covariance, and three constant-velocity forecast modes."""

    name: ClassVar[str] = "believer"
    inputs: ClassVar[frozenset[str]] = frozenset({"ground_truth"})

    def __init__(self):
        self.inner = make_policy("pdm-gt", raster=RASTER)

    def initial_state(self, batch: int, device: Any) -> Any:
        return self.inner.initial_state(batch, device)

    def act(self, state: Any, obs: Observation) -> tuple[PolicyOutput, Any]:
        out, state = self.inner.act(state, obs)
        gt = obs.ground_truth
        B, M = gt.valid.shape
        prob = torch.linspace(0.01, 1.0, M).expand(B, M) * gt.valid
        cov = torch.tensor([[1.0, 0.4], [0.4, 0.3]]).expand(B, M, 2, 2)
        t = torch.arange(1, 13, dtype=torch.float32) * 0.4  # (T,)
        straight = gt.xy[:, :, None] + gt.velocity[:, :, None] * t[:, None]  # (B, M, T, 2)
        aside = straight + torch.tensor([0.0, 2.0])
        forecasts = torch.stack((straight, aside, aside * 1.1), dim=2)  # (B, M, K, T, 2)
        weights = torch.tensor(MODE_WEIGHTS).expand(B, M, 3) * gt.valid[..., None]
        C = out.overlay.candidates.shape[1]
        risk = torch.linspace(5.0, 1.0, C).roll(1).expand(B, C)  # the last candidate the safest
        overlay = dataclasses.replace(out.overlay, objects_xy=gt.xy, objects_cov=cov, objects_prob=prob,
                                      forecasts=forecasts, forecast_weights=weights, candidate_risk=risk,
                                      chosen=torch.zeros(B, dtype=torch.long), sigma=torch.full((B,), 1.5),
                                      tracks_xy=gt.xy + 0.5, tracks_cov=cov, tracks_prob=prob)  # fmt: skip
        return dataclasses.replace(out, overlay=overlay), state


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    """A short crosswalk_crowd drive of `Believer`, recorded with the Foxglove channels, and what was
    simulated at each step (ego box centre and yaw, agents, the policy's output, the rasters)."""
    scenario = load_scenario(scenario_path("crosswalk_crowd"))
    out = tmp_path_factory.mktemp("logs")
    policy = Believer()
    recorder = drive_recorder(out, scenario, [1], policy, RASTER, foxglove=True)
    steps = []

    def observe(state, obs, plan):
        recorder.observe(state, obs, plan)
        o = plan.overlay
        overlay = {n: getattr(o, n)[0].numpy().copy() for n in o.__dataclass_fields__ if getattr(o, n) is not None}
        steps.append({
            "time": float(obs.frame.time[0]), "centre": ego_center(state.ego)[0].numpy().copy(),
            "yaw": float(state.ego.yaw[0]), "agents_xy": state.agents.xy[0].numpy().copy(),
            "valid": state.agents.valid[0].numpy().copy(), "trajectory": plan.trajectory[0].numpy().copy(),
            "map": obs.frame.map[0].numpy().copy(), "overlay": overlay,
        })  # fmt: skip

    with torch.inference_mode():
        final, _, errors = rollout(build_batch(scenario, [1]), policy, STEPS, raster=RASTER, observer=observe)
    (path,) = recorder.close(final, errors)
    return path, steps


def read_channels(path):
    """{topic: (schema, channel, [decoded messages])}, each decoded with a class built from the schema record
    alone (as Foxglove does), not from the installed package."""
    found = {}
    with open(path, "rb") as stream:
        for schema, channel, message in make_reader(stream).iter_messages():
            if not channel.topic.startswith("/foxglove/"):
                continue
            if channel.topic not in found:
                pool = descriptor_pool.DescriptorPool()
                for file in FileDescriptorSet.FromString(schema.data).file:
                    pool.Add(file)
                decoder = message_factory.GetMessageClass(pool.FindMessageTypeByName(schema.name))
                found[channel.topic] = (schema, channel, decoder, [])
            found[channel.topic][3].append(found[channel.topic][2].FromString(message.data))
    return {topic: (s, c, messages) for topic, (s, c, _, messages) in found.items()}


def yaw_of(q) -> float:
    return 2 * np.arctan2(q.z, q.w)


def close(a, b, atol=1e-4) -> bool:
    return np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=atol)


def test_every_channel_is_a_foxglove_schema_in_protobuf(drive):
    path, _ = drive
    channels = read_channels(path)
    assert set(channels) == set(CHANNELS)
    for topic, (schema, channel, messages) in channels.items():
        assert schema.name == CHANNELS[topic].DESCRIPTOR.full_name, topic
        assert (schema.encoding, channel.message_encoding) == ("protobuf", "protobuf"), topic
        expected = STEPS if topic not in RASTER_TOPICS else len(range(0, STEPS, RASTER_EVERY))
        assert len(messages) == expected, topic


def test_the_ego_frame_follows_the_ego_box_centre(drive):
    path, steps = drive
    *_, transforms = read_channels(path)["/foxglove/tf"]
    for step, message in zip(steps, transforms, strict=True):
        assert (message.parent_frame_id, message.child_frame_id) == (WORLD_FRAME, EGO_FRAME)
        assert close([message.translation.x, message.translation.y], step["centre"])
        assert close(yaw_of(message.rotation), step["yaw"])
        assert message.timestamp.seconds + message.timestamp.nanos * 1e-9 == pytest.approx(step["time"])


def test_true_agents_are_boxes_where_the_simulator_had_them(drive):
    path, steps = drive
    *_, scenes = read_channels(path)["/foxglove/truth"]
    for step, scene in zip(steps, scenes, strict=True):
        agents = [e for e in scene.entities if e.id.startswith("agent-")]
        assert len(agents) == int(step["valid"].sum()) > 0
        for entity in agents:
            n = int(entity.id.split("-")[1])
            assert entity.frame_id == WORLD_FRAME
            assert close([entity.cubes[0].pose.position.x, entity.cubes[0].pose.position.y], step["agents_xy"][n])
        (ego,) = [e for e in scene.entities if e.id == "ego"]
        assert ego.frame_id == EGO_FRAME and close([ego.cubes[0].pose.position.x, ego.cubes[0].pose.position.y], 0)
        assert [d.type for d in scene.deletions] == [1]  # ALL: an agent that left the scene is not drawn on


def test_believed_objects_are_ellipses_at_their_covariance(drive):
    path, steps = drive
    *_, scenes = read_channels(path)["/foxglove/detections"]
    for step, scene in zip(steps, scenes, strict=True):
        o = step["overlay"]
        believed = np.flatnonzero(o["objects_prob"] >= MIN_DRAWN_EXISTENCE)
        assert len(scene.entities) == len(believed) > 0
        assert len(believed) < int((o["objects_prob"] > 0).sum())  # the faintest are left out
        for entity in scene.entities:
            m = int(entity.id.split("-")[1])
            assert entity.frame_id == EGO_FRAME and len(entity.lines) == 2  # 1 and 2 sigma
            assert entity.lines[0].color.a == pytest.approx(0.25 + 0.75 * o["objects_prob"][m], abs=2 / 256)
            for k, line in zip((1.0, 2.0), entity.lines, strict=True):
                points = np.array([[p.x, p.y] for p in line.points]) - o["objects_xy"][m]
                mahalanobis = np.einsum("pi,ij,pj->p", points, np.linalg.inv(o["objects_cov"][m]), points)
                radius = np.sqrt(np.linalg.eigvalsh(o["objects_cov"][m]).min())
                assert close(np.sqrt(mahalanobis), k, atol=LINE_QUANTUM_M / radius)


def test_forecast_modes_and_plan_candidates_are_lines_of_the_policy_output(drive):
    path, steps = drive
    channels = read_channels(path)
    for step, forecast, plan in zip(steps, channels["/foxglove/forecast"][2], channels["/foxglove/plan"][2],
                                    strict=True):  # fmt: skip
        o = step["overlay"]
        drawn = o["forecast_weights"] > MIN_DRAWN_MODE_WEIGHT
        assert sum(len(e.lines) for e in forecast.entities) == int(drawn.sum()) == 2 * int(step["valid"].sum())
        for entity in forecast.entities:
            a = int(entity.id.split("-")[1])
            for k, line in enumerate(entity.lines):
                assert close([[p.x, p.y] for p in line.points], o["forecasts"][a, k], atol=LINE_QUANTUM_M)
            assert entity.lines[0].thickness > entity.lines[1].thickness  # the heavier mode is wider
        entities = {e.id: e for e in plan.entities}
        assert len(entities["candidates"].lines) == len(o["candidates"])
        chosen = np.array([[p.x, p.y] for p in entities["plan"].lines[0].points])
        assert close(chosen, step["trajectory"], atol=LINE_QUANTUM_M)
        label = entities["plan"].texts[0].text
        assert "m/s" in label and "sigma +1.50" in label and f"risk {o['candidate_risk'][0]:.2f}" in label
        assert dict((kv.key, kv.value) for kv in entities["candidates"].metadata)["chosen"] == "1"  # the overlay's
        safest = entities["candidates"].lines[-1]  # drawn last, on top, in green
        assert close([[p.x, p.y] for p in safest.points], o["candidates"][np.argmin(o["candidate_risk"])],
                     atol=CANDIDATE_QUANTUM_M) and safest.color.g > safest.color.r  # fmt: skip


def test_tracks_are_their_own_channel(drive):
    path, steps = drive
    for step, scene in zip(steps, read_channels(path)["/foxglove/tracks"][2], strict=True):
        o = step["overlay"]
        assert {e.id for e in scene.entities} == {f"track-{m}" for m in np.flatnonzero(o["tracks_prob"] >= 0.05)}


def test_the_map_grid_is_the_raster_the_policy_saw(drive):
    path, steps = drive
    *_, grids = read_channels(path)["/foxglove/map"]
    for step, grid in zip(steps[::RASTER_EVERY], grids, strict=True):
        assert grid.frame_id == EGO_FRAME and grid.column_count == RASTER.size
        assert (grid.cell_size.x, grid.cell_size.y) == (RASTER.resolution, RASTER.resolution)
        assert [f.name for f in grid.fields] == ["red", "green", "blue", "alpha"]
        assert grid.row_stride == RASTER.size * 4 and len(grid.data) == RASTER.size**2 * 4
        assert grid.data == raster_grid(map_rgba(step["map"]), RASTER, step["time"], 0.0).data


def test_each_grid_cell_lies_where_its_raster_cell_does():
    raster = RasterConfig(size=12, resolution=0.5, ego_row_fraction=0.75)
    image = np.arange(12 * 12 * 4, dtype=np.uint32).reshape(12, 12, 4).astype(np.uint8)  # every cell differs
    image[..., 0] = np.arange(12)[:, None]
    image[..., 1] = np.arange(12)[None, :]
    grid = raster_grid(image, raster, 0.0, 0.0)
    cells = np.frombuffer(grid.data, np.uint8).reshape(-1, grid.column_count, 4)  # (rows along y, x, RGBA)
    i, j = np.meshgrid(np.arange(12), np.arange(12))  # grid column i along ego x, row j along ego y
    x = grid.pose.position.x + (i + 0.5) * grid.cell_size.x
    y = grid.pose.position.y + (j + 0.5) * grid.cell_size.y
    row, col = (np.floor(v).astype(int) for v in ego_to_cell(x, y, raster))
    assert np.array_equal(cells, image[row, col])
    assert (grid.pose.position.x, grid.pose.position.y) == grid_origin(raster)


def test_the_tensor_channels_still_read_and_index_beside_the_foxglove_channels(drive):
    path, steps = drive
    frames = list(read_drive(path, {"/sensor/frame"}))
    assert [r.time_s for r in frames[:-1]] == pytest.approx([s["time"] for s in steps])  # then the final state
    index = build_index(path.parent, save=False)
    assert index.broken == {} and index.drives[0].steps == STEPS


def test_an_encoded_channel_may_not_take_a_tensor_topic(tmp_path):
    with DriveLogWriter(tmp_path / "d.mcap", "d") as log:
        log.write("/ego/state", 0.0, {"ego.xy": torch.zeros(1, 2)})
        with pytest.raises(ValueError, match="already a drivestack tensor channel"):
            log.register_encoded("/ego/state", "protobuf")
