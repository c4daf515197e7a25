"""The registry of scenario families, by the name a scenario file gives in `family:`."""

from __future__ import annotations

from sim.scenarios.families.crowd import ETHUCY_CROWD
from sim.scenarios.families.custom import CUSTOM
from sim.scenarios.families.pedestrians import CROSSWALK_CROWD, OCCLUDED_PEDESTRIAN
from sim.scenarios.families.scripted import CUT_IN, LEAD_BRAKE
from sim.scenarios.families.traffic import CRUISING, GHOST_ROAD, MERGE, UNPROTECTED_LEFT
from sim.scenarios.family import Family

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        CRUISING,
        LEAD_BRAKE,
        CUT_IN,
        UNPROTECTED_LEFT,
        CROSSWALK_CROWD,
        OCCLUDED_PEDESTRIAN,
        MERGE,
        GHOST_ROAD,
        ETHUCY_CROWD,
        CUSTOM,
    )
}

__all__ = ["FAMILIES", "Family"]
