"""Tracking: Detections over time -> Tracks, with a Kalman filter and soft association.

Modules, in the order a step uses them: `motion` (ego-motion compensation and
constant-velocity prediction), `association` (marginal association
probabilities), `update` (PDA update, existence, attributes), `birth`,
`history`; `tracker` composes them (deploy.graphs exports a step for ONNX).
"""

from perception.tracking.config import TrackerConfig
from perception.tracking.motion import relative_motion
from perception.tracking.state import TrackerState
from perception.tracking.tracker import Tracker

__all__ = ["Tracker", "TrackerConfig", "TrackerState", "relative_motion"]
