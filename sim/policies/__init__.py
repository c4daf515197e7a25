"""Closed-loop policies by name. Packages above `sim` (the driving stack) register
their own with `register_policy`, so the simulator never imports them."""

from __future__ import annotations

from collections.abc import Callable

from sim.policies.base import Observation, Overlay, Policy, PolicyOutput

PolicyFactory = Callable[[], Policy]

_REGISTRY: dict[str, PolicyFactory] = {}


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Make `factory()` available as policy `name` (re-registering replaces it)."""
    _REGISTRY[name] = factory


def policy_names() -> list[str]:
    return sorted(_REGISTRY)


def make_policy(name: str) -> Policy:
    if name not in _REGISTRY:
        raise ValueError(f"unknown policy {name!r}; available: {', '.join(policy_names())}")
    return _REGISTRY[name]()


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
]
