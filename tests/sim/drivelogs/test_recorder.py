"""What a drive log holds beyond the observed steps: the sensor's ghosts, the final state, how the drive
ended, and its place in its suite."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sim.config import RasterConfig
from sim.drivelogs.format import GHOSTS_TOPIC, STATE_TOPICS, read_drive
from sim.drivelogs.index import build_index, suite_order
from sim.drivelogs.recorder import SuiteOrder, drive_recorder, record_drives
from sim.policies import make_policy
from sim.runner import rollout
from sim.scenarios import build_batch, episode_steps, load_scenario, scenario_path
from sim.sensors import detect_objects, ground_truth, render_frame
from sim.sensors.objects import pad_ghosts

SECONDS = 0.5  # 5 sim steps


def short(name: str):
    return load_scenario(scenario_path(name)).with_overrides({"duration": SECONDS})


def by_topic(path, topic: str) -> list[dict[str, np.ndarray]]:
    return [r.tensors for r in read_drive(path, {topic})]


def test_every_step_logs_the_sensors_ghosts_and_the_final_state_follows_the_last_step(tmp_path):
    scenario = short("ghost_road")
    policy = make_policy("pdm-gt")
    recorder = drive_recorder(tmp_path, scenario, [4, 5], policy, RasterConfig(), foxglove=False)
    ghosts = []

    def observe(state, obs, plan):
        ghosts.append(pad_ghosts(detect_objects(state)))
        recorder.observe(state, obs, plan)

    final, _, errors = rollout(build_batch(scenario, [4, 5]), policy, episode_steps(scenario), observer=observe)
    paths = recorder.close(final, errors)
    logged = by_topic(paths[1], GHOSTS_TOPIC)
    assert len(logged) == len(ghosts) + 1  # each step's, then the final state's
    for step, want in enumerate([*ghosts, pad_ghosts(detect_objects(final))]):
        reported = want.index(1).valid[0]
        for name, value in want.index(1).to_flat("ghosts").items():  # the reported ghosts, in slot order
            assert np.array_equal(logged[step][name][0], value[0, reported].numpy()), (step, name)
    assert any(bool(g.valid.any()) for g in ghosts)  # ghost_road draws ghosts: the test compares some

    final_frame = render_frame(final)
    for topic in STATE_TOPICS:
        assert len(by_topic(paths[0], topic)) == len(ghosts) + 1, topic
    assert np.array_equal(by_topic(paths[0], "/sensor/frame")[-1]["frame.bev"], final_frame.index(0).bev.numpy())
    labels = by_topic(paths[0], "/agents/labels")[-1]["labels.xy"]
    assert np.array_equal(labels, ground_truth(final).index(0).xy.numpy())

    entry = build_index(tmp_path, save=False).drives[0]
    assert (entry.frames, entry.steps) == (len(ghosts) + 1, len(ghosts))
    assert entry.result == {"steps": str(len(ghosts)), "final_frame": "1", "error": ""}


def test_drives_come_in_their_suites_order_whatever_their_file_names(tmp_path):
    suite = SuiteOrder.of("hard")
    policy = make_policy("pdm-gt")
    # ghost_road (8th of hard) sorts after cut_in (3rd) by name too; merge (7th) sorts before it by name.
    for name in ("merge", "cut_in"):
        record_drives(short(name), [11, 2], policy, tmp_path, foxglove=False, suite=suite)
    record_drives(short("cruising"), [0], policy, tmp_path, foxglove=False)  # no suite: last
    index = build_index(tmp_path)
    assert [d.drive for d in index.drives] == [
        "cut_in-000002", "cut_in-000011", "merge-000002", "merge-000011", "cruising-000000",
    ]  # fmt: skip
    meta = index.drives[0].metadata
    assert (meta["suite"], meta["suite_position"]) == ("hard", "2")
    assert json.loads(meta["timing"])["sim_dt"] == pytest.approx(0.1)
    assert suite_order(list(reversed(index.drives))) == index.drives


def test_a_scenario_outside_the_suite_and_a_malformed_seed_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not in suite 'demo'"):
        SuiteOrder.of("demo").metadata("merge")
    from sim.drivelogs.format import DriveLogWriter

    with DriveLogWriter(tmp_path / "odd.mcap", "odd", {"seed": "-3"}) as log:
        log.write("/sensor/frame", 0.0, {"x": torch.zeros(1)})
    index = build_index(tmp_path, save=False)
    assert index.drives == [] and "metadata seed '-3', expected an integer" in index.broken["odd.mcap"]
