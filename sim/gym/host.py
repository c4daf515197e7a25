"""Observations and step outcomes from torch to numpy on the host, once per step, copying only what must
be copied.

On a CPU device a tensor becomes a numpy array without a copy (`Tensor.numpy()` shares its memory). That
is safe for the sensor's outputs, which are new tensors every step, but not for the few frame fields that
are the world state's own tensors (the ego's speed, acceleration and yaw rate): a caller writing into its
observation would change the simulation. Those, found by comparing memory with the state's tensors (not
by a list of field names that could go stale), and non-contiguous views are copied; everything else is
handed over as is. At B = 1024 with the default 128 x 128 rasters a step's observation is about 330 MB;
copying it all took 0.1-0.2 s per step on the 2-core dev machine, 5-9 % of the step
(`bench/gym_overhead.py`, docs/benchmarks.md).

On a GPU every field is copied to the host (`Tensor.cpu()`), one transfer per field; that copy is the
price of numpy observations (about 330 MB per step at B = 1024, rasters included).

A suite's scenarios run in separate batches: their fields are concatenated along the batch (one copy),
object lists padded with empty slots to the largest scenario's slot count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional

from core.contracts import TensorContract
from sim.gym.reward import StepOutcome
from sim.policies import Observation
from sim.state import WorldState

ObservationArrays = dict[str, dict[str, np.ndarray]]
PARTS = ("frame", "detections", "ground_truth")


def state_memory(states: Sequence[WorldState]) -> set[int]:
    """Addresses of the memory behind every tensor of `states`."""
    found = set()
    for state in states:
        found.add(state.step.untyped_storage().data_ptr())
        found.add(state.seed.untyped_storage().data_ptr())
        for part in (state.ego, state.agents, state.params, state.log, state.map, state.sensor):
            for name in part.field_names():
                found.add(getattr(part, name).untyped_storage().data_ptr())
    return found


def _to_numpy(tensor: Tensor, shared: set[int]) -> np.ndarray:
    if tensor.device.type != "cpu":
        return tensor.cpu().numpy()
    if not tensor.is_contiguous() or tensor.untyped_storage().data_ptr() in shared:
        tensor = tensor.contiguous() if not tensor.is_contiguous() else tensor.clone()
    return tensor.numpy()


def _pad_slots(tensor: Tensor, slots: int) -> Tensor:
    """Pad axis 1 (object slots) with zeros (empty slots: `valid` False, kind 0, score 0)."""
    missing = slots - tensor.shape[1]
    if missing == 0:
        return tensor
    return functional.pad(tensor, (0, 0) * (tensor.dim() - 2) + (0, missing))


def observation_arrays(
    observations: Sequence[Observation], states: Sequence[WorldState], slots: Mapping[str, int]
) -> ObservationArrays:
    """`{part: {field: array [B, ...]}}` of the blocks' observations, in block order; `slots[part]` is the
    object slot count of each object-list part."""
    shared = state_memory(states)
    out: ObservationArrays = {}
    for part in PARTS:
        contracts: list[TensorContract | None] = [getattr(obs, part) for obs in observations]
        if contracts[0] is None:
            continue
        fields = {}
        for name in contracts[0].field_names():
            tensors = [getattr(c, name) for c in contracts]
            if part in slots:
                tensors = [_pad_slots(t, slots[part]) for t in tensors]
            fields[name] = _to_numpy(tensors[0] if len(tensors) == 1 else torch.cat(tensors), shared)
        out[part] = fields
    return out


def outcome_arrays(
    outcomes: Sequence[StepOutcome], judged: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The blocks' rewards (float64), ends (bool) and reward terms as numpy [B], in block order. Where
    `judged` is False (sub-environments being reset) the reward is 0, nothing ends, and each term is 0
    with its Gymnasium mask `_name` False."""

    def cat(get) -> np.ndarray:
        return torch.cat([get(o) for o in outcomes]).cpu().numpy()

    reward = np.where(judged, cat(lambda o: o.reward).astype(np.float64), 0.0)
    terminated = cat(lambda o: o.terminated) & judged
    truncated = cat(lambda o: o.truncated) & judged
    terms: dict[str, np.ndarray] = {}
    for name in outcomes[0].info:
        values = cat(lambda o, name=name: o.info[name])
        terms[name] = np.where(judged, values, np.zeros_like(values))
        terms[f"_{name}"] = judged.copy()
    return reward, terminated, truncated, terms
