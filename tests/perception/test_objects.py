"""Object lists as detections, for the diagnostics that feed the tracker from an object list."""

from __future__ import annotations

import torch

from perception.objects import CLASS_CONFIDENCE, detections_from_objects
from sim.sensors import detect_objects, ground_truth
from tests.sim.sensor_worlds import Box, sensor_world


def test_an_object_list_becomes_valid_detections_with_its_scores_as_existence():
    world = sensor_world([[Box(x=12.0, y=0.0), Box(x=20.0, y=-3.0, yaw=0.4)]], position_jitter=0.2, ghost_rate=3.0)
    for objects in (ground_truth(world), detect_objects(world)):
        det = detections_from_objects(objects, 0.2).validate()
        assert torch.equal(det.existence, objects.score) and torch.equal(det.valid, objects.valid)
        assert torch.allclose(det.position_cov[objects.valid][:, 0, 0], torch.tensor(0.2**2 + 0.02**2))
        best = det.class_probs[objects.valid].max(-1)
        assert torch.allclose(best.values, torch.tensor(CLASS_CONFIDENCE))
        assert torch.equal(best.indices, objects.kind[objects.valid])
