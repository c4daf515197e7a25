"""nuPlan's closed-loop score from per-episode results.

    score = no_at_fault_collisions * drivable_area_compliance * making_progress
            * (5 * ttc_within_bound + 5 * min(progress_ratio, 1)
               + 4 * speed_limit_compliance + 2 * comfortable) / 16

no_at_fault_collisions is nuPlan's product over collision classes of
max(0, 1 - n / (allowed + 1)), with no collision allowed with vehicles,
pedestrians or cyclists and one with static objects: any at-fault collision with
a moving-class agent gives 0, one with a static object 0.5, two or more 0.
nuPlan's fourth multiplier, driving-direction compliance, is left out (the
ego's route here never runs against traffic). See docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

# (result key, weight) of the weighted average, nuPlan's weights.
WEIGHTED = (("ttc_within_bound", 5.0), ("progress_ratio", 5.0), ("speed_limit_compliance", 4.0), ("comfortable", 2.0))
MULTIPLIERS = ("drivable_area_compliance", "making_progress")
# Collisions allowed before a class's factor reaches 0 (nuPlan's max_violation_threshold_*).
ALLOWED_COLLISIONS = {"at_fault_vehicle": 0, "at_fault_pedestrian": 0, "at_fault_cyclist": 0, "at_fault_static": 1}


def _get(results: Mapping[str, Tensor], key: str) -> Tensor:
    if key not in results:
        raise KeyError(f"composite_score: results lack {key!r} (have {sorted(results)})")
    return torch.as_tensor(results[key]).to(torch.float32)


def collision_factor(results: Mapping[str, Tensor]) -> Tensor:
    """[B] 1 without at-fault collisions; see the module docstring."""
    factors = [(1.0 - _get(results, key) / (allowed + 1)).clamp_min(0.0) for key, allowed in ALLOWED_COLLISIONS.items()]
    return torch.stack(factors).prod(0)


def composite_score(results: Mapping[str, Tensor]) -> Tensor:
    """[B] nuPlan-style closed-loop score in [0, 1] from `EpisodeAccumulator.finalize()`'s results."""
    multiplier = collision_factor(results)
    for key in MULTIPLIERS:
        multiplier = multiplier * _get(results, key)
    total = sum(w for _, w in WEIGHTED)
    weighted = torch.zeros_like(multiplier)
    for key, weight in WEIGHTED:
        value = _get(results, key)
        if key == "progress_ratio":
            value = value.clamp(0.0, 1.0)
        weighted = weighted + weight * value
    return multiplier * weighted / total
