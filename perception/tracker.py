"""The tracker's public entry point; the implementation lives in `perception.tracking`."""

from perception.tracking import Tracker, TrackerConfig, TrackerGraph, TrackerState, relative_motion

__all__ = ["Tracker", "TrackerConfig", "TrackerGraph", "TrackerState", "relative_motion"]
