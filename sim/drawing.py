"""What a drawn step shows, shared by the video renderer (`sim.render`) and the Foxglove channels of a drive
log (`sim.drivelogs.foxglove`): the palette, which candidate the plan follows, how candidates are coloured (by
risk where the policy gives it, else by weight), which objects and modes are worth drawing, and the plan's
key numbers. Colours are BGR (OpenCV's order).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# BGR colours by AgentKind: vehicle, pedestrian, cyclist.
KIND_COLOURS = ((235, 160, 60), (60, 60, 235), (60, 200, 60))
KIND_NAMES = ("vehicle", "pedestrian", "cyclist")
EGO_COLOUR = (0, 200, 255)
PLAN_COLOUR = (0, 255, 255)
DRIVABLE_COLOUR = (90, 90, 90)
BEV_COLOUR = (215, 190, 160)  # a sensor return
LANE_COLOUR = (60, 140, 60)
CROSSWALK_COLOUR = (60, 60, 140)
DETECTION_COLOUR = (255, 255, 255)  # dimmed by existence
TRACK_COLOUR = (255, 255, 0)  # cyan: the tracker's tracks, dimmed by existence
# Candidates from the riskiest (or least weighted) to the safest (or most weighted).
CANDIDATE_LOW, CANDIDATE_HIGH = (40, 40, 170), (80, 210, 80)
# BGR colours of forecast modes by mode index (magenta, orange, green, violet, yellow, cyan, pink, white).
MODE_COLOURS = ((255, 0, 255), (0, 140, 255), (80, 220, 80), (255, 90, 140), (0, 230, 230), (255, 220, 0),
                (170, 120, 255), (230, 230, 230))  # fmt: skip
# Display only: believed objects below this existence are not drawn (they would be invisible anyway).
MIN_DRAWN_EXISTENCE = 0.05
MIN_DRAWN_MODE_WEIGHT = 0.02


def chosen_candidate(overlay: Mapping[str, np.ndarray], plan: np.ndarray) -> int:
    """The candidate the plan follows: the overlay's `chosen` where the policy names it, else the one of
    `candidates` [C, T, 2] closest to the plan [T, 2] (mean distance over their common steps; ego frame, m)."""
    if "chosen" in overlay:
        return int(np.asarray(overlay["chosen"]).reshape(-1)[0])
    candidates = overlay["candidates"]
    steps = min(candidates.shape[1], plan.shape[0])
    gaps = np.linalg.norm(candidates[:, :steps] - plan[None, :steps], axis=-1).mean(-1)
    return int(np.argmin(gaps))


def candidate_levels(overlay: Mapping[str, np.ndarray]) -> np.ndarray:
    """Each candidate's standing in [0, 1], 1 the best: by risk where the overlay gives it (the least risky
    1, the riskiest 0, linear between), else by weight relative to the heaviest."""
    if "candidate_risk" in overlay:
        risk = np.asarray(overlay["candidate_risk"], np.float64)
        low, high = float(risk.min(initial=0.0)), float(risk.max(initial=0.0))
        return (high - risk) / (high - low) if high > low else np.ones_like(risk)
    weights = overlay.get("candidate_weights", np.ones(overlay["candidates"].shape[0]))
    top = float(np.max(weights, initial=0.0))
    return np.clip(weights / top, 0.0, 1.0) if top > 0 else np.zeros_like(weights)


def candidate_colour(level: float) -> tuple[int, int, int]:
    """BGR of a candidate at `level` (`candidate_levels`): red for the riskiest (or least weighted), green for
    the safest (or most weighted)."""
    return tuple(int(round(lo + (hi - lo) * level)) for lo, hi in zip(CANDIDATE_LOW, CANDIDATE_HIGH, strict=True))


def plan_numbers(overlay: Mapping[str, np.ndarray], plan: np.ndarray) -> list[str]:
    """The plan's key numbers where the overlay carries them: sigma, and the chosen candidate with its weight
    and risk."""
    parts = []
    if "sigma" in overlay:
        parts.append(f"sigma {float(np.asarray(overlay['sigma']).reshape(-1)[0]):+.2f}")
    if "candidates" in overlay:
        c = chosen_candidate(overlay, plan)
        text = f"plan = candidate {c + 1} of {overlay['candidates'].shape[0]}"
        if "candidate_weights" in overlay:
            text += f", weight {float(overlay['candidate_weights'][c]):.2f}"
        if "candidate_risk" in overlay:
            text += f", risk {float(overlay['candidate_risk'][c]):.2f}"
        parts.append(text)
    return parts


def mode_colour(k: int, weight: float) -> tuple[int, int, int]:
    """BGR of forecast mode k (its palette colour, so mode k keeps its colour from frame to frame) dimmed
    by its weight."""
    return tuple(int(c * (0.35 + 0.65 * weight)) for c in MODE_COLOURS[k % len(MODE_COLOURS)])


def map_image(map_raster: np.ndarray) -> np.ndarray:
    """The map raster `[3, H, W]` (drivable, lanes, crosswalks in [0, 1]) as a BGR image `[H, W, 3]` uint8."""
    colours = np.array((DRIVABLE_COLOUR, LANE_COLOUR, CROSSWALK_COLOUR), np.float32)  # (3 channels, BGR)
    return np.einsum("chw,cb->hwb", map_raster.astype(np.float32), colours).clip(0, 255).astype(np.uint8)


def bev_hits(bev: np.ndarray) -> np.ndarray:
    """Cells `[H, W]` bool where the BEV raster `[2, H, W]` has a sensor return."""
    return bev[0] > 0.5
