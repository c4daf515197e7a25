"""Schemas of the sections every scenario file shares: road (per road type), ego, sensor,
and the IDM section reused by the traffic families. docs/scenarios.md documents each key."""

from __future__ import annotations

from sim.ego import DEFAULT_EGO
from sim.scenarios.schema import Field, flag, integer, num, section, text
from sim.sensors.noise import SCENARIO_RASTER_NOISE_LIMIT

ROAD_TYPES = ("straight", "curved", "intersection", "merge")

_WIDTH = num("lane width, m", 3.5, 2.5, 5.0)
_LIMIT = num("speed limit of the lanes, m/s", 13.9, 1.0, 40.0)
_POINTS = integer("points per path polyline (P); spacing = path length / (P - 1)", 96, 16, 512, random=False)

_PARALLEL = {
    "type": text("road layout", options=ROAD_TYPES),
    "lanes": integer("lanes in the ego's direction (lane 0 is next to the kerb)", 2, 1, 6),
    "oncoming_lanes": integer("lanes in the opposite direction", 0, 0, 4),
    "lane_width": _WIDTH,
    "length": num("road length along lane 0, m", 300.0, 50.0, 2000.0),
    "speed_limit": _LIMIT,
    "shoulder_width": num("drivable kerbside strip right of lane 0 (parking), m", 0.0, 0.0, 5.0),
    "crosswalk_s": num("arc length of a mid-block crosswalk across the road, m (absent: none)", None, 0.0, 2000.0),
    "crosswalk_width": num("crosswalk width along the road, m", 4.0, 1.0, 10.0),
    "path_points": _POINTS,
}

ROAD_FIELDS: dict[str, dict[str, Field]] = {
    "straight": dict(_PARALLEL),
    "curved": {
        **_PARALLEL,
        "radius": num("radius of lane 0, m (lanes are concentric)", low=20.0, high=10000.0),
        "direction": text("way the road turns", "left", ("left", "right"), random=True),
    },
    "intersection": {
        "type": _PARALLEL["type"],
        "lanes": integer("lanes per direction on every arm", 1, 1, 3),
        "lane_width": _WIDTH,
        "arm_length": num("length of each arm from the box edge, m", 50.0, 20.0, 300.0),
        "speed_limit": _LIMIT,
        "turn_speed_limit": num("speed limit of left and right turns, m/s", 8.0, 1.0, 40.0),
        "corner_radius": num("kerb radius at the corners, m (box half-size = lanes * width + this)", 6.0, 1.0, 20.0),
        "crosswalk_width": num("crosswalk width, m", 4.0, 1.0, 10.0),
        "crosswalk_gap": num("distance from the box edge to each crosswalk, m", 1.0, 0.0, 10.0),
        "path_points": _POINTS,
    },
    "merge": {
        "type": _PARALLEL["type"],
        "lanes": integer("main-road lanes", 2, 1, 6),
        "lane_width": _WIDTH,
        "length": num("main-road length, m", 300.0, 50.0, 2000.0),
        "speed_limit": _LIMIT,
        "merge_s": num("x where the ramp joins lane 0, m", 150.0, 20.0, 2000.0),
        "ramp_length": num("length of the ramp's taper, m", 80.0, 20.0, 500.0),
        "ramp_offset": num("lateral offset of the ramp start right of lane 0, m", 8.0, 3.0, 50.0),
        "ramp_speed_limit": num("speed limit on the ramp path, m/s", 16.7, 1.0, 40.0),
        "path_points": _POINTS,
    },
}

_EGO_COMMON = {
    "speed": num("initial speed, m/s", 10.0, 0.0, 40.0),
    "s": num("initial arc length of the rear axle along the route, m", 30.0, 0.0, 2000.0),
    "lane": integer("lane of the route (0 = kerb lane)", 0, 0, 5),
    "length": num("box length, m", DEFAULT_EGO.length, 2.0, 20.0),
    "width": num("box width, m", DEFAULT_EGO.width, 1.0, 3.0),
    "wheelbase": num(
        "wheelbase, m (the box centre lies wheelbase / 2 ahead of the rear axle)", DEFAULT_EGO.wheelbase, 1.0, 10.0
    ),
}

EGO_FIELDS: dict[str, dict[str, Field]] = {
    "straight": dict(_EGO_COMMON),
    "curved": dict(_EGO_COMMON),
    "intersection": {
        **_EGO_COMMON,
        "turn": text(
            "movement through the intersection from the west arm",
            "straight",
            ("straight", "left", "right"),
            random=True,
        ),
    },
    "merge": {**_EGO_COMMON, "on_ramp": flag("start on the ramp (else on main lane `lane`)", True)},
}

SENSOR_FIELDS = {
    "range": num("sensing radius, m", 50.0, 1.0, 500.0),
    "position_jitter": num("std of object position noise, m", 0.0, 0.0, 5.0),
    "miss_prob": num("probability a visible object is missed in a frame", 0.0, 0.0, 1.0),
    "ghost_rate": num("expected false positives per frame", 0.0, 0.0, 100.0),
    "raster_noise": num("probability an empty raster cell lights up", 0.0, 0.0, SCENARIO_RASTER_NOISE_LIMIT),
}

IDM_FIELDS = {
    "time_headway": num("IDM desired time gap T, s", 1.5, 0.1, 10.0),
    "min_gap": num("IDM standstill gap s0, m", 2.0, 0.0, 20.0),
    "max_accel": num("IDM maximum acceleration a, m/s^2", 1.5, 0.1, 10.0),
    "comfort_decel": num("IDM comfortable deceleration b, m/s^2", 2.0, 0.1, 10.0),
    "politeness": num("MOBIL politeness p in [0, 1]; < 0 turns lane changes off", 0.3, -1.0, 1.0),
}


def idm_section() -> Field:
    return section("IDM and MOBIL parameters of the traffic, drawn per vehicle", IDM_FIELDS)
