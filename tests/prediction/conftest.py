"""Small synthetic scenes for the predictor's tests: pedestrians walking roughly straight lines."""

from __future__ import annotations

import pytest
import torch

from prediction.windows import HISTORY, HORIZON, SAMPLE_DT, TrajectoryWindows, no_lanes


def walking_windows(
    windows: int = 3, agents: int = 5, seed: int = 0, spread: float = 4.0, pedestrians: bool = True
) -> TrajectoryWindows:
    """`windows` scenes of `agents` walkers (or vehicles) with random starts, headings and speeds; the
    last slot of every window is empty and agent 1 of window 0 is first seen two steps ago."""
    g = torch.Generator().manual_seed(seed)
    L = HISTORY + HORIZON
    start = (torch.rand(windows, agents, 1, 2, generator=g) - 0.5) * 2 * spread
    heading = torch.rand(windows, agents, 1, generator=g) * 2 * torch.pi
    speed = 0.5 + torch.rand(windows, agents, 1, generator=g) * (1.5 if pedestrians else 8.0)
    t = torch.arange(L, dtype=torch.float32) * SAMPLE_DT
    direction = torch.stack((heading.cos(), heading.sin()), dim=-1)  # [S, A, 1, 2]
    wobble = 0.03 * torch.randn(windows, agents, L, 2, generator=g)
    xy = start + speed[..., None] * t[None, None, :, None] * direction + wobble
    present = torch.ones(windows, agents, L, dtype=torch.bool)
    present[0, 1, : HISTORY - 2] = False
    valid = torch.ones(windows, agents, dtype=torch.bool)
    valid[:, -1] = False
    present[:, -1] = False
    xy = torch.where(present[..., None], xy, torch.zeros_like(xy))
    kind = 1 if pedestrians else 0
    class_probs = torch.zeros(windows, agents, 3)
    class_probs[..., kind] = 1.0
    size = torch.full((windows, agents, 2), 0.5) if pedestrians else torch.tensor([4.5, 1.9]).expand(windows, agents, 2)
    return TrajectoryWindows(xy, present, class_probs, size.clone(), valid, **no_lanes(windows)).validate()


@pytest.fixture
def walkers() -> TrajectoryWindows:
    return walking_windows()
