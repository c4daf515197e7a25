"""Closed-loop policies by name. Packages above `sim` (the driving stack) register
their own with `register_policy`, so the simulator never imports them."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from sim.policies.base import Observation, Overlay, Policy, PolicyOutput

PolicyFactory = Callable[..., Policy]

_REGISTRY: dict[str, PolicyFactory] = {}


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Make `factory(**options)` available as policy `name` (re-registering replaces it); a factory
    that takes no options is called without any."""
    _REGISTRY[name] = factory


def policy_names() -> list[str]:
    return sorted(_REGISTRY)


def takes_option(name: str, option: str) -> bool:
    """Whether policy `name`'s factory takes `option` (e.g. the `raster` a baseline reads the map with)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown policy {name!r}; available: {', '.join(policy_names())}")
    params = inspect.signature(_REGISTRY[name]).parameters
    return option in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def make_policy(name: str, **options: Any) -> Policy:
    """Policy `name`, built with `options` (e.g. the stack's `backend`); options a policy does not take
    are an error naming them, not ignored."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown policy {name!r}; available: {', '.join(policy_names())}")
    factory = _REGISTRY[name]
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(k for k in options if not takes_any and k not in params)
    if unknown:
        raise ValueError(f"policy {name!r} takes no option {unknown[0]!r}")
    return factory(**options)


def _register_baselines() -> None:
    from sim.policies.idm import IDMOracle, IDMPolicy
    from sim.policies.pdm import PDMClosed, PDMOracle

    register_policy(IDMPolicy.name, IDMPolicy)
    register_policy(IDMOracle.name, IDMOracle)
    register_policy(PDMClosed.name, PDMClosed)
    register_policy(PDMOracle.name, PDMOracle)


_register_baselines()

__all__ = [
    "Observation",
    "Overlay",
    "Policy",
    "PolicyOutput",
    "make_policy",
    "policy_names",
    "register_policy",
    "takes_option",
]
