"""Closed-loop policies by name: the simulator's baselines, the plug-ins the package metadata lists in
`drivestack.policies` (the driving stack's, found without `sim` importing `stack`: `core.plugins`), and any
a caller adds with `register_policy`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from core.plugins import load_plugin, plugin_names
from sim.config import RasterConfig
from sim.policies.base import Observation, Overlay, Policy, PolicyOutput

PolicyFactory = Callable[..., Policy]
PLUGINS = "drivestack.policies"

_REGISTRY: dict[str, PolicyFactory] = {}


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Make `factory(**options)` available as policy `name` (re-registering replaces it); a factory
    that takes no options is called without any."""
    _REGISTRY[name] = factory


def policy_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(plugin_names(PLUGINS)))


def _factory(name: str) -> PolicyFactory:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in plugin_names(PLUGINS):
        return load_plugin(PLUGINS, name)
    raise ValueError(f"unknown policy {name!r}; available: {', '.join(policy_names())}")


def takes_option(name: str, option: str) -> bool:
    """Whether policy `name`'s factory takes `option` (e.g. the `raster` a baseline reads the map with)."""
    params = inspect.signature(_factory(name)).parameters
    return option in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def make_policy(name: str, **options: Any) -> Policy:
    """Policy `name`, built with `options` (e.g. the stack's `backend`); options a policy does not take
    are an error naming them, not ignored."""
    factory = _factory(name)
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(k for k in options if not takes_any and k not in params)
    if unknown:
        raise ValueError(f"policy {name!r} takes no option {unknown[0]!r}")
    return factory(**options)


def policy_at_raster(name: str, raster: RasterConfig) -> Policy:
    """Policy `name` reading its inputs at `raster` where it takes one (the rule-based planners read the map
    raster); policies that take no raster read what they are given."""
    return make_policy(name, raster=raster) if takes_option(name, "raster") else make_policy(name)


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
    "policy_at_raster",
    "takes_option",
]
