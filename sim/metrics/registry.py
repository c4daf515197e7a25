"""Step metrics by name (waymax's `metric_factory`): the runner picks them with strings.

A metric subclasses `StepMetric`, fills in `_compute` and registers itself with
`@register_metric`. The base class builds the shared `StepContext` and checks
what the subclass returns.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from torch import Tensor

from sim.metrics.config import MetricsConfig
from sim.metrics.context import StepContext
from sim.state import WorldState


class StepMetric(abc.ABC):
    """Values for one step `prev -> state`, each a tensor with leading dim B.

    Subclasses set `name` and `outputs` (the keys `_compute` returns) and
    implement `_compute(ctx)`.
    """

    name: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]

    def __init__(self, config: MetricsConfig | None = None):
        self.config = config if config is not None else MetricsConfig()

    def compute(self, prev: WorldState, state: WorldState) -> dict[str, Tensor]:
        """This metric's values for the step from `prev` to `state`."""
        return self.evaluate(StepContext(prev, state, self.config))

    def evaluate(self, ctx: StepContext) -> dict[str, Tensor]:
        """Like `compute`, on a context that other metrics may share."""
        values = self._compute(ctx)
        if set(values) != set(self.outputs):
            raise RuntimeError(f"metric {self.name!r} returned {sorted(values)}, declared {sorted(self.outputs)}")
        B = ctx.state.batch_size
        for key, value in values.items():
            if value.shape[:1] != (B,):
                raise RuntimeError(f"metric {self.name!r}: {key} has shape {tuple(value.shape)}, expected [{B}, ...]")
        return values

    @abc.abstractmethod
    def _compute(self, ctx: StepContext) -> dict[str, Tensor]:
        """The values, keyed by `outputs`."""


_REGISTRY: dict[str, type[StepMetric]] = {}


def register_metric(cls: type[StepMetric]) -> type[StepMetric]:
    """Class decorator: make `cls` available as `get_metric(cls.name)`."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a metric named {cls.name!r} is already registered ({_REGISTRY[cls.name].__name__})")
    _REGISTRY[cls.name] = cls
    return cls


def metric_names() -> list[str]:
    """Registered metric names, sorted."""
    return sorted(_REGISTRY)


def get_metric(name: str, config: MetricsConfig | None = None) -> StepMetric:
    """A new instance of the metric registered as `name`."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown metric {name!r}; registered: {', '.join(metric_names())}")
    return _REGISTRY[name](config)
