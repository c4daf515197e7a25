"""Replace some episodes of a batched `WorldState` by freshly built ones: the autoreset of a sub-environment.

Every episode is a pure function of its seed (`build_batch`: "the same whatever batch it is built in";
`sim.step`: "bit for bit the same alone or in any batch"), so an episode started in the middle of a
running batch is exactly the episode a fresh batch would start. The replacement is out of place, like
`step`: states (and any observation arrays that share their memory) handed out earlier never change.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor
from torch.nn import functional

from core.contracts import ContractError, TensorContract
from sim.state import RoadMap, WorldState

_PARTS = ("ego", "agents", "params", "log", "sensor")


def replace_episodes(state: WorldState, rows: Tensor, fresh: WorldState) -> WorldState:
    """`state` with episodes `rows [K]` (long, on the state's device) replaced by the K episodes of `fresh`,
    which must come from the same scenario and timing (same capacities and dt)."""
    if fresh.batch_size != rows.numel():
        raise ContractError(f"replace_episodes: {rows.numel()} rows but {fresh.batch_size} fresh episodes")
    if abs(fresh.dt - state.dt) > 1e-12:
        raise ContractError(f"replace_episodes: fresh dt={fresh.dt} differs from the state's {state.dt}")
    changes = {name: _put_contract(getattr(state, name), rows, getattr(fresh, name), name) for name in _PARTS}
    return dataclasses.replace(
        state,
        step=state.step.index_copy(0, rows, fresh.step),
        seed=state.seed.index_copy(0, rows, fresh.seed),
        map=_put_map(state.map, rows, fresh.map),
        **changes,
    )


def _put(old: Tensor, rows: Tensor, new: Tensor, where: str) -> Tensor:
    if old.shape[1:] != new.shape[1:] or old.dtype != new.dtype:
        raise ContractError(
            f"replace_episodes: {where} is {tuple(old.shape[1:])} {old.dtype} per episode in the running batch, "
            f"{tuple(new.shape[1:])} {new.dtype} in the fresh one (episodes of another scenario?)"
        )
    return old.index_copy(0, rows, new)


def _put_contract(old: TensorContract, rows: Tensor, new: TensorContract, name: str) -> TensorContract:
    fields = {
        f.name: _put(getattr(old, f.name), rows, getattr(new, f.name), f"{name}.{f.name}")
        for f in type(old).tensor_fields()
    }
    return dataclasses.replace(old, **fields)


def _put_map(old: RoadMap, rows: Tensor, new: RoadMap) -> RoadMap:
    fields = {
        f.name: _put(getattr(old, f.name), rows, getattr(new, f.name), f"map.{f.name}")
        for f in RoadMap.tensor_fields()
        if f.name != "raster"
    }
    return dataclasses.replace(old, raster=_put_raster(old.raster, rows, new.raster, old.path_xy.shape[0]), **fields)


def _put_raster(old: Tensor, rows: Tensor, new: Tensor, batch: int) -> Tensor:
    """The map raster after the replacement. A raster shared by the whole batch (leading dim 1) stays
    shared when the fresh episodes share the very same one (a scenario whose road is not drawn per
    episode); otherwise every episode gets its own, padded with empty cells to the larger extent, as
    `sim.roads.stack_roads` does for a batch of several layouts."""
    if old.shape[0] == 1 and new.shape[0] == 1 and old.shape == new.shape and torch.equal(old, new):
        return old
    height, width = max(old.shape[2], new.shape[2]), max(old.shape[3], new.shape[3])
    old = _pad_to(old.expand(batch, *old.shape[1:]), height, width)
    new = _pad_to(new.expand(rows.numel(), *new.shape[1:]), height, width)
    return old.index_copy(0, rows, new)


def _pad_to(raster: Tensor, height: int, width: int) -> Tensor:
    pad_h, pad_w = height - raster.shape[2], width - raster.shape[3]
    if pad_h == 0 and pad_w == 0:
        return raster
    return functional.pad(raster, (0, pad_w, 0, pad_h))  # cells beyond a layout's extent are empty (0)
