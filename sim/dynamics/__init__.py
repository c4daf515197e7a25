"""Per-step models of everything that moves in the simulator.

`ego` (kinematic bicycle), `idm` (lane following) with `mobil` (lane changes)
on top of `driver` (the IDM itself) and `neighbours` (batched leader search),
`pedestrians` (walking), `replay` (logged agents); `lanes` is the fast
arc-length lookup they share. `sim.step.step` composes them.
"""

from sim.dynamics.driver import DEFAULT_IDM, IdmSettings, idm_accel
from sim.dynamics.ego import advance_ego, route_progress
from sim.dynamics.idm import advance_idm
from sim.dynamics.pedestrians import advance_walkers
from sim.dynamics.replay import advance_replay

__all__ = [
    "DEFAULT_IDM",
    "IdmSettings",
    "advance_ego",
    "advance_idm",
    "advance_replay",
    "advance_walkers",
    "idm_accel",
    "route_progress",
]
