"""Inputs for every exported graph: recorded from the simulator, or random but valid.

`recorded_inputs` drives a batch of episodes of one scenario for a few frames
and runs the torch stack on each, so the example holds a real frame, a
recurrent state with live tracks, and the detections, tracks and forecast that
the stack computed from them: one dict covers the inputs of every graph.
`random_inputs` does the same on frames whose sensor and map rasters, speeds
and sigmas are random (everything downstream of them is what the stack makes
of them, so it is valid by construction). Both are deterministic in their seed.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from deploy.graphs import NOISE, Named
from perception.frames import push
from sim.scenarios import build_batch, load_scenario, scenario_path
from sim.sensors import render_frame
from sim.step import EgoAction
from sim.step import step as sim_step
from sim.types import SensorFrame
from stack.model import Stack

DEFAULT_SCENARIO = "crosswalk_crowd"
DEFAULT_SAMPLES = 4


def recorded_frames(stack: Stack, batch: int, frames: int, scenario: str = DEFAULT_SCENARIO, seed: int = 0):
    """`frames` consecutive sensor frames of `batch` episodes (seeds seed...), the ego coasting."""
    if batch < 1 or frames < 1:
        raise ValueError(f"recorded_frames: expected batch >= 1 and frames >= 1, got {batch} and {frames}")
    raster = stack.cfg.perception.detector.raster
    world = build_batch(load_scenario(scenario_path(scenario)), list(range(seed, seed + batch)))
    coast = EgoAction(accel=torch.zeros(batch), steer=torch.zeros(batch))
    out = []
    for _ in range(frames):
        out.append(render_frame(world, raster))
        world = sim_step(world, coast)
    return out


def inputs_for_frames(stack: Stack, frames: list[SensorFrame], sigma: Tensor, seed: int = 0) -> Named:
    """Run the torch stack over `frames[:-1]`, then collect every graph input at the last frame."""
    with torch.no_grad():
        state = stack.initial_state(frames[0])
        for frame in frames[:-1]:
            _, state = stack.step(state, frame, sigma)
        frame = frames[-1]
        out = stack.step_outputs(state, frame, sigma)
    named: Named = {**frame.to_flat("frame"), **state.to_flat("state")}
    named.update(push(state.perception.frames, frame).to_flat("frames"))  # the detector's input
    named.update(out.detections.to_flat("detections"))
    named.update(out.tracks.to_flat("tracks"))
    named.update(out.forecast.to_flat("forecast"))
    named["sigma"] = sigma
    named.update(_noise(out.forecast.log_weights.shape[:2], stack.timing.horizon_steps, seed))
    return named


def _noise(batch_agents: torch.Size, horizon: int, seed: int) -> Named:
    generator = torch.Generator().manual_seed(seed)
    B, A = batch_agents
    mode = torch.rand(B, A, DEFAULT_SAMPLES, generator=generator)
    position = torch.randn(B, A, DEFAULT_SAMPLES, horizon, 2, generator=generator)
    return dict(zip(NOISE, (mode, position), strict=True))


def recorded_inputs(
    stack: Stack, batch: int, warmup: int = 3, scenario: str = DEFAULT_SCENARIO, seed: int = 0
) -> Named:
    """Every graph's inputs at frame `warmup` of `batch` recorded episodes, sigma spread over [-0.5, 5]."""
    frames = recorded_frames(stack, batch, warmup + 1, scenario, seed)
    sigma = torch.linspace(-0.5, 5.0, batch) if batch > 1 else torch.ones(1)
    return inputs_for_frames(stack, frames, sigma, seed)


def random_inputs(stack: Stack, batch: int, warmup: int = 3, seed: int = 0) -> Named:
    """Every graph's inputs after `warmup` frames of random sensor and map rasters, speeds and sigmas."""
    generator = torch.Generator().manual_seed(seed)
    template = recorded_frames(stack, batch, warmup + 1, seed=seed)
    frames = [_randomised(frame, generator) for frame in template]
    sigma = torch.empty(batch).uniform_(-0.5, 5.0, generator=generator)
    return inputs_for_frames(stack, frames, sigma, seed)


def _randomised(frame: SensorFrame, generator: torch.Generator) -> SensorFrame:
    """`frame` with random rasters (sparse bev returns in [0, 1], a random map class per cell) and speeds."""
    B = frame.batch_size
    returns = torch.rand(frame.bev.shape, generator=generator)
    bev = returns * (torch.rand(frame.bev.shape, generator=generator) < 0.05)
    classes = torch.randint(0, frame.map.shape[1], (B, *frame.map.shape[2:]), generator=generator)
    map_raster = torch.nn.functional.one_hot(classes, frame.map.shape[1]).permute(0, 3, 1, 2).to(frame.map.dtype)
    speed = torch.rand(B, generator=generator) * 15.0
    return dataclasses.replace(frame, bev=bev, map=map_raster, ego_speed=speed)
