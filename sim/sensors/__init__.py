"""Simulated sensors: a lidar-like BEV raster with occlusion and noise, the map
raster, the route, and object lists (exact labels and a noisy object sensor).

All outputs are in the ego frame at the current time, with the origin at the
centre of the ego's box (x forward, y left). Every random draw is keyed by
(seed, step, stream, slot), so a frame depends only on its episode's state.
"""

from sim.sensors.frame import frame_and_detections, render_frame
from sim.sensors.objects import detect_objects, ground_truth
from sim.sensors.raster import cell_centres, ego_origin_cell, ego_xy_to_cell

__all__ = [
    "cell_centres",
    "detect_objects",
    "ego_origin_cell",
    "ego_xy_to_cell",
    "frame_and_detections",
    "ground_truth",
    "render_frame",
]
