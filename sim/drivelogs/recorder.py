"""Recording drives: a `sim.runner.rollout` observer that writes one MCAP drive log per episode.

    recorder = DriveRecorder("logs", [drive_name(scenario, s) for s in seeds], [{"scenario": ..., "seed": ...}, ...],
                             raster)
    rollout(state, policy, steps, observer=recorder.observe)
    paths = recorder.close()

Each step writes the sensor frame the policy saw, the ego state, the ground-truth
agents (world frame, known in simulation) and the same agents as detector
labels (`sim.sensors.ground_truth`: ego frame, with their visibility to the
sensor), and what the policy exposed: the objects it believed in, its
forecasts and its plan (`sim.policies.Overlay`). Each step also goes to channels in Foxglove's schemas
(`sim.drivelogs.foxglove`: the ego's frame, the true agents, the believed objects and tracks, forecasts,
candidates and plan, the rasters), so the drive opens in Foxglove's 3D panel as it was driven
(`foxglove=False` leaves them out).
`record_drives` runs a scenario for a list of seeds with a policy and records them;
`drivestack sim --record DIR` records the drives of any suite run, with any
policy and runtime backend (e.g. the exported stack on onnxruntime), through
`drive_recorder`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from sim.config import RasterConfig
from sim.drivelogs.format import (
    EGO_TOPIC,
    FRAME_TOPIC,
    LABELS_TOPIC,
    PREFIXES,
    TRUTH_TOPIC,
    DriveLogWriter,
)
from sim.drivelogs.foxglove import FoxgloveChannels
from sim.policies import Observation, Policy, PolicyOutput
from sim.runner import rollout
from sim.scenarios import Scenario, build_batch, episode_steps
from sim.sensors import ground_truth
from sim.state import WorldState

# Whether recorders write the Foxglove channels unless told (`foxglove=False`: tensor channels only).
FOXGLOVE_CHANNELS = True


def drive_name(scenario: str, seed: int) -> str:
    """The drive's identity and file stem: `<scenario>-<seed, 6 digits>`."""
    return f"{scenario}-{seed:06d}"


class DriveRecorder:
    """Writes episode b of every observed step to `out/<drives[b]>.mcap` (with `foxglove`, also to the
    Foxglove channels, `sim.drivelogs.foxglove`)."""

    def __init__(
        self,
        out: str | Path,
        drives: Sequence[str],
        metadata: Sequence[Mapping[str, str]],
        raster: RasterConfig,
        foxglove: bool = FOXGLOVE_CHANNELS,
    ):
        if len(drives) != len(metadata):
            raise ValueError(f"DriveRecorder: {len(drives)} drives but {len(metadata)} metadata records")
        out = Path(out)
        self.raster = raster
        self.writers = [DriveLogWriter(out / f"{d}.mcap", d, m) for d, m in zip(drives, metadata, strict=True)]
        self.foxglove = [FoxgloveChannels(log, raster) for log in self.writers] if foxglove else []

    def observe(self, state: WorldState, obs: Observation, plan: PolicyOutput) -> None:
        """The `StepObserver` hook: one message per topic per episode."""
        labels = ground_truth(state, self.raster)
        contracts = {FRAME_TOPIC: obs.frame, EGO_TOPIC: state.ego, TRUTH_TOPIC: state.agents, LABELS_TOPIC: labels}
        for b, log in enumerate(self.writers):
            time_s = float(obs.frame.time[b])
            for topic, contract in contracts.items():
                log.write(topic, time_s, contract.index(b).to_flat(PREFIXES[topic]))
            for topic, tensors in _stack_outputs(plan, b).items():
                if tensors:
                    log.write(topic, time_s, tensors)
            if self.foxglove:
                self.foxglove[b].write_step(state, obs.frame, plan, b)

    def close(self) -> list[Path]:
        return [log.close() for log in self.writers]

    def abort(self) -> None:
        for log in self.writers:
            log.abort()


def _stack_outputs(plan: PolicyOutput, b: int) -> dict[str, dict]:
    """What the policy exposed for episode b, by topic (empty where it exposed nothing)."""
    overlay = plan.overlay
    pick = lambda **named: {k: v[b] for k, v in named.items() if v is not None}  # noqa: E731
    plan_tensors = pick(trajectory=plan.trajectory, speeds=plan.speeds)
    if overlay is None:
        return {"/stack/plan": plan_tensors}
    return {
        "/stack/detections": pick(xy=overlay.objects_xy, cov=overlay.objects_cov, existence=overlay.objects_prob),
        "/stack/tracks": pick(xy=overlay.tracks_xy, cov=overlay.tracks_cov, existence=overlay.tracks_prob),
        "/stack/forecast": pick(means=overlay.forecasts, weights=overlay.forecast_weights),
        "/stack/plan": {
            **plan_tensors,
            **pick(
                candidates=overlay.candidates,
                candidate_weights=overlay.candidate_weights,
                candidate_risk=overlay.candidate_risk,
                chosen=overlay.chosen,
                sigma=overlay.sigma,
            ),
        },
    }


def drive_recorder(
    out: str | Path,
    scenario: Scenario,
    seeds: Sequence[int],
    policy: Policy,
    raster: RasterConfig,
    foxglove: bool = FOXGLOVE_CHANNELS,
) -> DriveRecorder:
    """A recorder for one batch of `scenario` (one episode per seed) driven by `policy`, with the drives'
    provenance (scenario, seed, policy) and the frames' raster as metadata (`foxglove`: also the Foxglove
    channels)."""
    drives = [drive_name(scenario.name, s) for s in seeds]
    raster_json = json.dumps(asdict(raster))  # so a job reading the logs knows the frames' geometry
    policy_name = getattr(policy, "name", type(policy).__name__)  # the registry's name, e.g. pdm-gt
    meta = [{"scenario": scenario.name, "family": scenario.family, "seed": str(s), "policy": policy_name,
             "raster": raster_json} for s in seeds]  # fmt: skip
    return DriveRecorder(out, drives, meta, raster, foxglove)


def record_drives(
    scenario: Scenario,
    seeds: Sequence[int],
    policy: Policy,
    out: str | Path,
    raster: RasterConfig = RasterConfig(),
    foxglove: bool = FOXGLOVE_CHANNELS,
) -> list[Path]:
    """Drive `scenario` for every seed (one batch) with `policy` and write one log per drive (`foxglove`: with
    the Foxglove channels)."""
    recorder = drive_recorder(out, scenario, seeds, policy, raster, foxglove)
    try:
        rollout(build_batch(scenario, list(seeds)), policy, episode_steps(scenario), raster=raster,
                observer=recorder.observe)  # fmt: skip
    except BaseException:
        recorder.abort()
        raise
    return recorder.close()
