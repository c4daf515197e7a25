"""Plug-ins named in the package metadata: how a package uses what the packages above it provide without
importing them, and without anything registering itself as a side effect of being imported.

The one list is `[project.entry-points]` in pyproject.toml (the composition root's registry):

    [project.entry-points."drivestack.policies"]
    stack = "stack.policy:stack_policy"

`sim.policies.make_policy("stack")` then finds the stack policy from plain Python, importing `stack.policy`
only when it is asked for. The names are read from the installed metadata (`pip install -e .`, which
`make` runs), so a plug-in added to pyproject.toml needs the project installed again.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import Any


@functools.cache
def _group(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def plugin_names(group: str) -> list[str]:
    """The names the installed metadata lists in `group`, none of them imported."""
    return sorted(_group(group))


def load_plugin(group: str, name: str) -> Any:
    """The object plug-in `name` of `group` names (its module imported now); `KeyError` if there is none."""
    return _group(group)[name].load()
