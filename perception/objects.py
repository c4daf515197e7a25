"""An object list (ground truth or the simulator's noisy object sensor) as `Detections`.

Diagnostics feed the stack's tracker, predictor and planner from an object list
instead of its detector, to tell a perception failure from a planning one
(DESIGN.md's evaluation protocol). An object list carries no covariances: the
position covariance is the sensor's declared accuracy, the velocity's twice
that, and the class a confident but not certain one.
"""

from __future__ import annotations

import torch

from perception.types import Detections
from sim.state import NUM_CLASSES
from sim.types import ObjectList

HEADING_CONCENTRATION = 10.0  # an object list's headings carry a few degrees of noise
CLASS_CONFIDENCE = 0.9  # its class is right most of the time: not one-hot


def detections_from_objects(objects: ObjectList, position_std: float) -> Detections:
    """`objects` (ego frame) as detections with existence = the object's score and isotropic position
    covariance `position_std`^2 (+ a 2 cm floor), m."""
    B, M = objects.valid.shape
    eye = torch.eye(2, dtype=objects.xy.dtype, device=objects.xy.device)
    other = (1 - CLASS_CONFIDENCE) / (NUM_CLASSES - 1)
    kind = torch.nn.functional.one_hot(objects.kind, NUM_CLASSES).to(objects.xy.dtype) * (CLASS_CONFIDENCE - other)
    return Detections(
        existence=objects.score,
        class_probs=kind + other,
        position=objects.xy,
        position_cov=(position_std**2 + 0.02**2) * eye.expand(B, M, 2, 2),
        velocity=objects.velocity,
        velocity_cov=((2 * position_std) ** 2 + 0.1**2) * eye.expand(B, M, 2, 2),
        heading=objects.yaw,
        heading_concentration=torch.full(
            (B, M), HEADING_CONCENTRATION, dtype=objects.xy.dtype, device=objects.xy.device
        ),  # fmt: skip
        size=torch.stack((objects.length, objects.width), -1).clamp_min(0.1),
        valid=objects.valid,
    )
