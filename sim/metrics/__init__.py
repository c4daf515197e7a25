"""Closed-loop metrics in the style of nuPlan: per-step values, per-episode results, a score.

    acc = EpisodeAccumulator.init(state)
    for each step:  acc = acc.update(state, next_state)
    results = acc.finalize()               # dict of [B] tensors
    results["score"] = composite_score(results)

Step metrics are registered by name (`metric_names()`, `get_metric(name)`);
`StepMetrics(names)` evaluates several on one shared context. docs/metrics.md
defines every value.
"""

from sim.metrics.config import CollisionConfig, ComfortConfig, MetricsConfig, ProgressConfig, TTCConfig
from sim.metrics.episode import COMFORT_SIGNALS, EPISODE_METRICS, EpisodeAccumulator
from sim.metrics.registry import StepMetric, get_metric, metric_names, register_metric
from sim.metrics.score import composite_score
from sim.metrics.step_metrics import COLLISION_CLASSES, StepMetrics

__all__ = [
    "COLLISION_CLASSES",
    "COMFORT_SIGNALS",
    "EPISODE_METRICS",
    "CollisionConfig",
    "ComfortConfig",
    "EpisodeAccumulator",
    "MetricsConfig",
    "ProgressConfig",
    "StepMetric",
    "StepMetrics",
    "TTCConfig",
    "composite_score",
    "get_metric",
    "metric_names",
    "register_metric",
]
