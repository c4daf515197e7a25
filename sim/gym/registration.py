"""Gymnasium ids for the packaged scenarios and suites.

    drivestack/<name>-v0   every packaged scenario (`cut_in`, `merge`, ...) and suite (`hard`, `demo`, ...),
                           a '-' in the name written '_' (suite `hard-v2` is `drivestack/hard_v2-v0`)
    drivestack/scenario-v0 any scenario or suite: pass `scenario=` (a name or a .yaml path)

Each id has both entry points: `gymnasium.make` builds a `DrivestackEnv`, `gymnasium.make_vec` a
`DrivestackVectorEnv` (its default vectorization when an id has a vector entry point).

Gymnasium 1.x finds third-party ids only in its in-process registry, filled by `gymnasium.register`;
it no longer reads package entry points. So `register_envs()` must run before an id is looked up:
`import sim.gym` runs it, and so does the `module:id` form, `gymnasium.make("sim.gym:drivestack/cut_in-v0")`,
which imports `sim.gym` first. This is the one place in drivestack where importing a module registers
something, and it registers only with Gymnasium, whose protocol it is.
"""

from __future__ import annotations

import gymnasium

from sim.scenarios import packaged_scenarios, packaged_suites

NAMESPACE = "drivestack"
VERSION = 0
ANY_SCENARIO = "scenario"  # the id that takes `scenario=` from the caller
SINGLE_ENTRY_POINT = "sim.gym.single:DrivestackEnv"
VECTOR_ENTRY_POINT = "sim.gym.vector:DrivestackVectorEnv"


def env_id(name: str) -> str:
    """The id of a packaged scenario or suite name."""
    return f"{NAMESPACE}/{name.replace('-', '_')}-v{VERSION}"


def registered_ids() -> dict[str, str | None]:
    """Every id this package registers, with the scenario or suite it runs (None: the caller's)."""
    names = packaged_scenarios() + packaged_suites()
    ids: dict[str, str | None] = {env_id(name): name for name in names}
    if len(ids) != len(names) or env_id(ANY_SCENARIO) in ids:
        raise RuntimeError(f"scenario and suite names map onto the same Gymnasium ids: {sorted(names)}")
    ids[env_id(ANY_SCENARIO)] = None
    return ids


def register_envs() -> None:
    """Register every id with Gymnasium (ids already there are left alone, so calling again is harmless)."""
    for id_, scenario in registered_ids().items():
        if id_ in gymnasium.registry:
            continue
        gymnasium.register(
            id=id_,
            entry_point=SINGLE_ENTRY_POINT,
            vector_entry_point=VECTOR_ENTRY_POINT,
            kwargs={} if scenario is None else {"scenario": scenario},
        )
