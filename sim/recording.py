"""Keeps what the renderer needs from chosen episodes of a batch, as small numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sim.config import RasterConfig
from sim.geometry import box_corners, ego_center, ego_corners, sample_raster
from sim.policies import Observation, PolicyOutput
from sim.state import EgoState, WorldState

WORLD_VIEW_M = 80.0  # side of the world panel, m
WORLD_VIEW_AHEAD_M = 15.0  # the panel's centre lies this far ahead of the ego's box centre (sees 55 m ahead)
WORLD_MAP_PX = 256  # cells per side of the drivable area kept per step (0.31 m; the renderer scales it up)


@dataclass(frozen=True)
class StepSnapshot:
    """One step of one episode, ready to draw (world panel north-up around the ego)."""

    time: float
    world_map: np.ndarray  # (P, P) uint8 drivable area of the world panel, row 0 north
    origin: np.ndarray  # (2,) world xy of the panel centre (`WORLD_VIEW_AHEAD_M` ahead of the ego)
    ego_pose: np.ndarray  # (3,) world x, y (m) of the ego's box centre and its yaw (rad): the ego frame
    ego_corners: np.ndarray  # (4, 2) world
    agent_corners: np.ndarray  # (N, 4, 2) world
    agent_kind: np.ndarray  # (N,)
    agent_valid: np.ndarray  # (N,)
    bev: np.ndarray  # (2, H, W)
    map: np.ndarray  # (3, H, W)
    plan: np.ndarray  # (T, 2) ego frame
    overlay: dict[str, np.ndarray]
    speed: float


def panel_origin(ego: EgoState) -> torch.Tensor:
    """World xy [B, 2] of the world panel's centre: `WORLD_VIEW_AHEAD_M` ahead of the ego's box centre."""
    heading = torch.stack((torch.cos(ego.yaw), torch.sin(ego.yaw)), dim=-1)
    return ego_center(ego) + WORLD_VIEW_AHEAD_M * heading


class EpisodeRecorder:
    """An observer for `sim.runner.rollout` that snapshots the episodes `indices`."""

    def __init__(self, indices: list[int], raster: RasterConfig):
        self.indices = list(indices)
        self.raster = raster
        self.snapshots: dict[int, list[StepSnapshot]] = {i: [] for i in self.indices}

    def observe(self, state: WorldState, obs: Observation, plan: PolicyOutput) -> None:
        idx = torch.tensor(self.indices, device=state.device)
        origin = panel_origin(state.ego)[idx]
        world_map = self._world_map(state, idx, origin)
        ego = ego_corners(state.ego)[idx]
        a = state.agents
        agents = box_corners(a.xy, a.yaw, a.length, a.width)[idx]
        overlay = {
            name: getattr(plan.overlay, name)[idx].detach().cpu().numpy()
            for name in plan.overlay.__dataclass_fields__
            if getattr(plan.overlay, name) is not None
        }
        for j, b in enumerate(self.indices):
            self.snapshots[b].append(
                StepSnapshot(
                    time=float(state.time[b]),
                    world_map=world_map[j],
                    origin=origin[j].cpu().numpy(),
                    ego_pose=obs.frame.ego_pose[b].detach().cpu().numpy(),
                    ego_corners=ego[j].cpu().numpy(),
                    agent_corners=agents[j].cpu().numpy(),
                    agent_kind=a.kind[b].cpu().numpy(),
                    agent_valid=a.valid[b].cpu().numpy(),
                    bev=obs.frame.bev[b].detach().cpu().numpy(),
                    map=obs.frame.map[b].detach().cpu().numpy(),
                    plan=plan.trajectory[b].detach().cpu().numpy(),
                    overlay={k: v[j] for k, v in overlay.items()},
                    speed=float(state.ego.speed[b]),
                )
            )

    def _world_map(self, state: WorldState, idx: torch.Tensor, centre: torch.Tensor) -> np.ndarray:
        """Drivable area around `centre` [len(idx), 2] (world, m) of each chosen episode, north up, row 0 at the
        top."""
        px = WORLD_MAP_PX
        lin = (torch.arange(px, device=state.device, dtype=torch.float32) + 0.5) / px - 0.5
        east = lin * WORLD_VIEW_M
        north = -lin * WORLD_VIEW_M
        grid = torch.stack(torch.meshgrid(north, east, indexing="ij")[::-1], dim=-1)  # (px, px, 2) = (x, y)
        points = grid.unsqueeze(0) + centre[:, None, None, :]
        m = state.map
        raster = m.raster if m.raster.shape[0] == 1 else m.raster[idx]
        values = sample_raster(raster, m.raster_origin[idx], m.raster_resolution[idx], points, channel=0)
        return (values * 255).to(torch.uint8).cpu().numpy()

    def frames(self, index: int) -> list[StepSnapshot]:
        return self.snapshots[index]
