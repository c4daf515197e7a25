"""`TrajectoryWindows`: observed pasts and true futures of every agent in S scene windows.

The one data format both training sources produce (ETH/UCY text files and
simulator episodes) and every metric consumes. A window is one moment in one
scene: steps `0 .. history-1` are observed (step `history-1` is "now"), steps
`history .. history+horizon-1` are the future the model must predict. Positions
are in the window's frame: the world frame for ETH/UCY, the ego frame at the
current step for simulator episodes. Simulator windows also carry the lane
centrelines near the ego at the current step (`SensorFrame.lanes`, in the same
frame): map knowledge a model may read, like the past; ETH/UCY has no lanes
(one empty lane slot, `no_lanes`).

The future is a label, never an input: `observed()` is the only view a model
may read (see `prediction.inputs`), and a test proves its outputs do not change
when the future does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from core.contracts import ContractError, TensorContract, check_simplex, spec
from perception.types import check_positive
from sim.state import NUM_CLASSES

HISTORY = 8  # observed steps (3.2 s at 0.4 s)
HORIZON = 12  # predicted steps (4.8 s)
SAMPLE_DT = 0.4  # s per step


@dataclass(frozen=True)
class TrajectoryWindows(TensorContract):
    """S windows of A agent slots over `history + horizon` steps.

    Attributes:
        xy: [S, A, L, 2] float, box-centre position, m, window frame (0 where not `present`).
        present: [S, A, L] bool, the agent was observed at that step.
        class_probs: [S, A, 3] float in [0, 1], (vehicle, pedestrian, cyclist); rows sum to 1.
        size: [S, A, 2] float > 0, box (length, width), m (pedestrians about 0.5 x 0.5).
        valid: [S, A] bool, slot holds an agent (an agent present at the current step).
        lanes: [S, N, P, 2] float, lane centrelines near the ego at the current step, m, window frame,
            each in its direction of travel (`sim.sensors.lanes`); 0 where not `lanes_valid`.
        lanes_valid: [S, N, P] bool, the lane point exists.
        history: int, observed steps; the current step is `history - 1`.
        dt: float, s per step.
    """

    xy: Tensor = spec(("S", "A", "L", 2))
    present: Tensor = spec(("S", "A", "L"), "bool")
    class_probs: Tensor = spec(("S", "A", NUM_CLASSES), prob=True)
    size: Tensor = spec(("S", "A", 2), low=0.0)
    valid: Tensor = spec(("S", "A"), "bool")
    lanes: Tensor = spec(("S", "N", "P", 2))
    lanes_valid: Tensor = spec(("S", "N", "P"), "bool")
    history: int = HISTORY
    dt: float = SAMPLE_DT

    MASK_FIELD = "valid"

    @property
    def horizon(self) -> int:
        return int(self.xy.shape[2]) - self.history

    @property
    def current(self) -> int:
        return self.history - 1

    def observed(self) -> tuple[Tensor, Tensor]:
        """(xy [S, A, H, 2], present [S, A, H]): the past and present only, what a model may read."""
        h = self.history
        present = self.present[:, :, :h] & self.valid[..., None]
        return self.xy[:, :, :h], present

    def future(self) -> tuple[Tensor, Tensor]:
        """(xy [S, A, T, 2], present [S, A, T]): the labels."""
        h = self.history
        present = self.present[:, :, h:] & self.valid[..., None]
        return self.xy[:, :, h:], present

    def scored(self) -> Tensor:
        """[S, A] bool, agents observed at every history step and present at every future step:
        the agents the ETH/UCY protocol evaluates (Social-GAN: present in all 20 frames)."""
        return self.valid & self.present.all(dim=-1)

    def _check(self, sizes: dict[str, int]) -> None:
        if not 2 <= self.history < sizes["L"]:
            raise ContractError(
                f"TrajectoryWindows.history: expected 2 <= history < L = {sizes['L']}, got {self.history}"
            )
        if not self.dt > 0:
            raise ContractError(f"TrajectoryWindows.dt: expected > 0 s, got {self.dt}")
        now = self.present[:, :, self.current]
        if bool((self.valid & ~now).any()):
            raise ContractError("TrajectoryWindows.present: every valid agent must be present at the current step")
        check_simplex("TrajectoryWindows.class_probs", self.class_probs, self.valid)
        check_positive("TrajectoryWindows.size", self.size, self.valid)

    @staticmethod
    def concat(parts: list[TrajectoryWindows]) -> TrajectoryWindows:
        """Windows of several sources in one batch, agent slots padded to the widest."""
        if not parts:
            raise ContractError("TrajectoryWindows.concat: expected at least one part, got none")
        first = parts[0]
        for p in parts[1:]:
            if (p.history, p.horizon, p.dt) != (first.history, first.horizon, first.dt):
                raise ContractError(
                    "TrajectoryWindows.concat: parts differ in (history, horizon, dt): "
                    f"{(first.history, first.horizon, first.dt)} vs {(p.history, p.horizon, p.dt)}"
                )
        width = max(int(p.valid.shape[1]) for p in parts)
        lanes, points = (max(int(p.lanes_valid.shape[i]) for p in parts) for i in (1, 2))
        padded = [p.pad_agents(width).pad_lanes(lanes, points) for p in parts]
        return TrajectoryWindows(
            **{name: torch.cat([getattr(p, name) for p in padded]) for name in TrajectoryWindows.field_names()},
            history=first.history,
            dt=first.dt,
        )

    def trimmed(self) -> TrajectoryWindows:
        """The same windows without the trailing agent and lane slots that no window uses (at least one
        of each): batches come padded to the widest window of a whole dataset, most need far fewer."""
        width, lanes = _used(self.valid.any(dim=0)), _used(self.lanes_valid.any(dim=2).any(dim=0))
        fields = {name: getattr(self, name)[:, :width].contiguous() for name in AGENT_FIELDS}
        cut = dataclasses.replace(self, **fields, lanes=self.lanes[:, :lanes].contiguous(),
                                  lanes_valid=self.lanes_valid[:, :lanes].contiguous())  # fmt: skip
        return cut.pad_agents(width).pad_lanes(lanes, int(self.lanes_valid.shape[2]))  # one slot where none had any

    def pad_agents(self, agents: int) -> TrajectoryWindows:
        """The same windows with `agents` slots (extra slots invalid)."""
        extra = agents - int(self.valid.shape[1])
        if extra < 0:
            raise ContractError(f"TrajectoryWindows.pad_agents: expected >= {self.valid.shape[1]} slots, got {agents}")
        if extra == 0:
            return self

        def pad(t: Tensor, fill: float | bool = 0) -> Tensor:
            shape = (t.shape[0], extra, *t.shape[2:])
            return torch.cat([t, torch.full(shape, fill, dtype=t.dtype, device=t.device)], dim=1)

        return dataclasses.replace(
            self,
            xy=pad(self.xy),
            present=pad(self.present, False),
            class_probs=pad(self.class_probs, 1.0 / NUM_CLASSES),
            size=pad(self.size, 1.0),
            valid=pad(self.valid, False),
        )

    def pad_lanes(self, lanes: int, points: int) -> TrajectoryWindows:
        """The same windows with `lanes` lane slots of `points` points (extra ones invalid)."""
        S, N, P = self.lanes_valid.shape
        if lanes < N or points < P:
            raise ContractError(f"TrajectoryWindows.pad_lanes: expected >= ({N}, {P}) lanes and points, "
                                f"got ({lanes}, {points})")  # fmt: skip
        if (lanes, points) == (N, P):
            return self
        xy = self.lanes.new_zeros(S, lanes, points, 2)
        valid = self.lanes_valid.new_zeros(S, lanes, points)
        xy[:, :N, :P], valid[:, :N, :P] = self.lanes, self.lanes_valid
        return dataclasses.replace(self, lanes=xy, lanes_valid=valid)


AGENT_FIELDS = ("xy", "present", "class_probs", "size", "valid")  # the fields with an agent axis (axis 1)


def _used(slots: Tensor) -> int:
    """1 + the last used slot of `slots [N]` bool, at least 1."""
    used = slots.nonzero()
    return int(used.max()) + 1 if used.numel() else 1


def no_lanes(windows: int, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """The `lanes` and `lanes_valid` of S = `windows` windows without a map: one empty lane slot each."""
    return {"lanes": torch.zeros(windows, 1, 2, 2, device=device),
            "lanes_valid": torch.zeros(windows, 1, 2, dtype=torch.bool, device=device)}  # fmt: skip
