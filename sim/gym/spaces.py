"""Gymnasium spaces read off the simulator's contracts, and the checks an action batch must pass.

An observation is the runner's `Observation` as nested dicts: `{"frame": SensorFrame fields,
"detections": ObjectList fields, "ground_truth": ObjectList fields}` (the last two when asked for). Each
field's space is built from its `spec(...)` declaration, so the space cannot drift from the contract: the
dtype from the spec's kind, the bounds from its `low`, `high` and `prob`, the shape from the tensor the
simulator actually produces (its symbolic sizes - raster H and W, route points R, object slots M - are
fixed by the raster config and the scenario's capacities). docs/gym.md tables every key.

Actions are the two things the simulator can take from a driver: the bicycle model's command
(`EgoAction`: acceleration and steering) or a planned trajectory (`PolicyOutput.trajectory`) for the
tracking controller.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from gymnasium import spaces

from core.config import Timing
from core.contracts import ContractError, TensorContract
from sim.step import ACCEL_MAX, ACCEL_MIN, STEER_MAX

ACTION_MODES = ("control", "trajectory")
# Planned positions are box-centre offsets in the ego frame; 250 m covers 50 m/s over the 4.8 s
# horizon. The bound only keeps the space finite (an infinite Box samples from a normal distribution).
TRAJECTORY_REACH = 250.0  # m


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty((), dtype=dtype).numpy().dtype


def _bounds(meta: Mapping, dtype: np.dtype) -> tuple[float, float]:
    """The Box bounds a field's spec declares. Where it declares none: +-inf for floats, the int32 range
    for integers (a batched integer Box at the int64 limits cannot be sampled in Gymnasium 1.4)."""
    if dtype == np.bool_:
        return 0, 1
    low = 0.0 if meta["prob"] else meta["low"]
    high = 1.0 if meta["prob"] else meta["high"]
    if np.issubdtype(dtype, np.integer):
        wide = np.iinfo(np.int32)
        return (wide.min if low is None else int(low)), (wide.max if high is None else int(high))
    return (-np.inf if low is None else low), (np.inf if high is None else high)


def contract_space(example: TensorContract, slots: Mapping[str, int] | None = None) -> spaces.Dict:
    """The space of ONE episode's worth of `example` (a batched contract): a Dict with a Box per tensor
    field, named as the field. `slots` widens axis 1 of every field to a common size (object lists of
    scenarios with different agent capacities, padded with empty slots)."""
    boxes = {}
    for f in type(example).tensor_fields():
        meta = f.metadata["tensor"]
        value = getattr(example, f.name)
        dtype = _numpy_dtype(value.dtype)
        shape = tuple(int(s) for s in value.shape[1:])
        if slots and meta["shape"][1] in slots:
            shape = (slots[meta["shape"][1]], *shape[1:])
        low, high = _bounds(meta, dtype)
        boxes[f.name] = spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    return spaces.Dict(boxes)


def action_space(mode: str, timing: Timing) -> spaces.Box:
    """One sub-environment's action space.

    "control": float32 [2] = (longitudinal acceleration m/s^2 in [ACCEL_MIN, ACCEL_MAX], front-wheel
    steering angle rad in [-STEER_MAX, STEER_MAX], left > 0), applied for one sim step.
    "trajectory": float32 [T, 2], T = `timing.horizon_steps`: the ego box centre's planned positions in
    the ego frame now (origin at the box centre, x forward, y left, m), sample k at (k + 1) *
    `timing.sample_dt` s ahead, as `PolicyOutput.trajectory`; the tracking controller follows it.
    """
    if mode == "control":
        return spaces.Box(
            low=np.array([ACCEL_MIN, -STEER_MAX], np.float32),
            high=np.array([ACCEL_MAX, STEER_MAX], np.float32),
            dtype=np.float32,
        )
    if mode == "trajectory":
        shape = (timing.horizon_steps, 2)
        return spaces.Box(low=-TRAJECTORY_REACH, high=TRAJECTORY_REACH, shape=shape, dtype=np.float32)
    raise ContractError(f"action: expected one of {ACTION_MODES}, got {mode!r}")


_AXES = {"control": "(accel m/s^2, steer rad)", "trajectory": "(T samples, x/y m)"}


def check_actions(actions: object, single: spaces.Box, num_envs: int, mode: str, ignored: np.ndarray) -> np.ndarray:
    """`actions` as a float32 array [num_envs, *single.shape], or a ContractError naming the sub-environment,
    the component and the range expected. Rows where `ignored` is True (sub-environments being reset this
    step, whose action Gymnasium's next-step autoreset discards) are not checked and come back as zeros."""
    expected = (num_envs, *single.shape)
    try:
        array = np.asarray(actions, dtype=np.float64)
    except (TypeError, ValueError) as e:
        got = type(actions).__name__
        raise ContractError(f"actions: expected a number array of shape {expected}, got {got}") from e
    if array.shape != expected:
        raise ContractError(
            f"actions: expected shape {expected} [num_envs, {_AXES[mode]}] for action={mode!r}, got {array.shape}"
        )
    array = np.where(ignored.reshape(-1, *([1] * len(single.shape))), 0.0, array)
    finite = np.isfinite(array).reshape(num_envs, -1).all(axis=1)
    if not finite.all():
        env = int(np.flatnonzero(~finite)[0])
        raise ContractError(f"actions[{env}]: expected finite values for action={mode!r}, got {array[env].tolist()}")
    low, high = single.low.astype(np.float64), single.high.astype(np.float64)
    outside = ((array < low) | (array > high)).reshape(num_envs, -1)
    if outside.any():
        env, flat = (int(i[0]) for i in np.nonzero(outside))
        index = np.unravel_index(flat, single.shape)
        value, lo, hi = array[env][index], low[index], high[index]
        if mode == "trajectory":
            what = (f"sample {index[0]} {'xy'[index[1]]}", "m")
        else:
            what = (("accel", "m/s^2"), ("steer", "rad"))[int(index[0])]
        raise ContractError(
            f"actions[{env}]: {what[0]} = {value:g} {what[1]} is outside [{lo:g}, {hi:g}] "
            f"(clip with gymnasium.wrappers.vector.ClipAction)"
        )
    return array.astype(np.float32)
