"""`FrameStack`: the detector's explicit recurrent input state (the last K BEV frames).

The stack keeps each past BEV raster as the sensor drew it, in its own ego
frame, beside the world pose it was drawn from. `detector_input` warps every
frame into the CURRENT ego frame once (no resampling of resampled frames, so
bilinear warping never blurs twice) and appends the current map raster.

Episode start: a new stack repeats the first frame K times. Repeating keeps the
input at 2K + 3 channels with no mask channel. The detector can still tell the
repeats apart from a real static scene, because sensor noise (salt, jitter) is
drawn afresh every step: only a repeated frame matches the current one exactly.
Velocity cannot be seen in the first K - 1 steps of an episode; the velocity
covariance has to learn to say so.

Everything is a pure function of its inputs and uses only the past: the input
at time t is built from frames t - K + 1 .. t.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.contracts import ContractError, TensorContract, spec
from perception.config import WARP_MODES
from sim.config import RasterConfig
from sim.sensors.raster import cell_to_ego, ego_to_cell, grid_sample_coords
from sim.types import SensorFrame


@dataclass(frozen=True)
class FrameStack(TensorContract):
    """The last K sensor frames of each episode, oldest first.

    Attributes:
        bev: [B, K, 2, H, W] float, BEV rasters, each in the ego frame it was drawn in.
        pose: [B, K, 3] float, world (x m, y m, yaw rad) of the ego centre for each frame.
        map: [B, 3, H, W] float in [0, 1], the current frame's map raster.
    """

    bev: Tensor = spec(("B", "K", 2, "H", "W"), low=0.0)
    pose: Tensor = spec(("B", "K", 3))
    map: Tensor = spec(("B", 3, "H", "W"), prob=True)

    @property
    def num_frames(self) -> int:
        return int(self.bev.shape[1])


def initial_stack(frame: SensorFrame, frames: int) -> FrameStack:
    """A stack at episode start: the first frame repeated `frames` (K) times."""
    if not (isinstance(frames, int) and frames >= 1):
        raise ContractError(f"initial_stack.frames: expected an int >= 1, got {frames!r}")
    bev = frame.bev.unsqueeze(1).expand(-1, frames, -1, -1, -1).contiguous()  # (B, K, 2, H, W)
    pose = frame.ego_pose.unsqueeze(1).expand(-1, frames, -1).contiguous()  # (B, K, 3)
    return FrameStack(bev=bev, pose=pose, map=frame.map)


def push(stack: FrameStack, frame: SensorFrame) -> FrameStack:
    """Drop the oldest frame and append `frame` as the current one."""
    if frame.bev.shape != stack.bev.shape[:1] + stack.bev.shape[2:]:
        raise ContractError(
            f"push.frame.bev: expected shape {tuple(stack.bev.shape[:1] + stack.bev.shape[2:])} "
            f"to match the stack, got {tuple(frame.bev.shape)}"
        )
    bev = torch.cat((stack.bev[:, 1:], frame.bev.unsqueeze(1).to(stack.bev.dtype)), dim=1)
    pose = torch.cat((stack.pose[:, 1:], frame.ego_pose.unsqueeze(1).to(stack.pose.dtype)), dim=1)
    return FrameStack(bev=bev, pose=pose, map=frame.map.to(stack.map.dtype))


def pose_in_frame(pose: Tensor, frame: Tensor) -> Tensor:
    """[..., 3] world `pose` re-expressed in the ego frame whose world pose is `frame`.

    Both are world (x, y, yaw); the result is (x forward, y left, yaw) of
    `pose` as seen from `frame`, yaw wrapped to (-pi, pi].
    """
    dx, dy = pose[..., 0] - frame[..., 0], pose[..., 1] - frame[..., 1]
    c, s = torch.cos(frame[..., 2]), torch.sin(frame[..., 2])
    dyaw = pose[..., 2] - frame[..., 2]
    dyaw = torch.atan2(torch.sin(dyaw), torch.cos(dyaw))
    return torch.stack((c * dx + s * dy, c * dy - s * dx, dyaw), dim=-1)


def warp_bev(bev: Tensor, target_in_source: Tensor, raster: RasterConfig, mode: str = "bilinear") -> Tensor:
    """Resample rasters `[B, C, H, W]` drawn in a source ego frame into a target ego frame.

    `target_in_source` `[B, 3]` is the target frame's pose in the source frame
    (`pose_in_frame(target_pose, source_pose)`). Each target cell centre is mapped to the
    source frame and read with `grid_sample` (zeros outside the source raster).
    The grid is an affine function of (row, column) built from a per-row and a
    per-column part, so the graph holds no data-dependent control flow.
    """
    if mode not in WARP_MODES:
        raise ValueError(f"warp_bev.mode: expected one of {WARP_MODES}, got {mode!r}")
    B, _, H, W = bev.shape
    res = raster.resolution
    rows = torch.arange(H, dtype=bev.dtype, device=bev.device) + 0.5
    cols = torch.arange(W, dtype=bev.dtype, device=bev.device) + 0.5
    ahead, left = cell_to_ego(rows, cols, raster)  # (H,) target x, (W,) target y of the cell centres, m
    tx, ty, tyaw = (target_in_source[:, i].to(bev.dtype) for i in range(3))  # (B,)
    c, s = torch.cos(tyaw), torch.sin(tyaw)
    # Source-frame point of target point (x, y): (tx + c x - s y, ty + s x + c y).
    # grid_sample wants (column, row) normalised so -1 / +1 are the raster's outer edges.
    # Affine in (x, y): split into the row part (x terms + offset) and the column part (y terms).
    source_x, source_y = tx.unsqueeze(1) + c.unsqueeze(1) * ahead, ty.unsqueeze(1) + s.unsqueeze(1) * ahead
    row, col = ego_to_cell(source_x, source_y, raster)
    u_row, v_row = grid_sample_coords(row, col, H, W)  # (B, H) each, the constants included
    u_col = -2.0 * (c.unsqueeze(1) * left) / (res * W)  # (B, W)
    v_col = 2.0 * (s.unsqueeze(1) * left) / (res * H)  # (B, W)
    u = u_row.unsqueeze(2) + u_col.unsqueeze(1)  # (B, H, W)
    v = v_row.unsqueeze(2) + v_col.unsqueeze(1)  # (B, H, W)
    grid = torch.stack((u, v), dim=-1)  # (B, H, W, 2)
    return torch.nn.functional.grid_sample(bev, grid, mode=mode, padding_mode="zeros", align_corners=False)


def detector_input(stack: FrameStack, raster: RasterConfig, mode: str = "bilinear") -> Tensor:
    """[B, 2K + 3, H, W]: the K BEV frames warped into the current ego frame (oldest
    first, 2 channels each), then the current map raster (3 channels)."""
    B, K, C, H, W = stack.bev.shape
    past = K - 1  # the current frame is already in the current ego frame: it is not resampled
    current = stack.pose[:, -1:].expand(-1, past, -1)  # (B, K-1, 3)
    current_in_past = pose_in_frame(current, stack.pose[:, :past]).reshape(B * past, 3)
    warped = warp_bev(stack.bev[:, :past].reshape(B * past, C, H, W), current_in_past, raster, mode)
    return torch.cat((warped.reshape(B, past * C, H, W), stack.bev[:, -1], stack.map), dim=1)
