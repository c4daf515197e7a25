"""Recording drives: a `sim.runner.rollout` observer that writes one MCAP drive log per episode.

    recorder = DriveRecorder("logs", [drive_name(scenario, s) for s in seeds], [{"scenario": ..., "seed": ...}, ...],
                             raster)
    final, _, errors = rollout(state, policy, steps, observer=recorder.observe)
    paths = recorder.close(final, errors)

Each step writes the sensor frame the policy saw, the ego state, the ground-truth
agents (world frame, known in simulation) and the same agents as detector
labels (`sim.sensors.ground_truth`: ego frame, with their visibility to the
sensor), the object sensor's ghosts drawn into the frame, and what the policy
exposed: the objects it believed in, its forecasts and its plan
(`sim.policies.Overlay`). Closing writes the final state (frame, ego, agents,
labels, ghosts) after the last step, and how each drive ended. Each step also goes to channels in Foxglove's schemas
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from core.config import Timing
from sim.config import RasterConfig
from sim.drivelogs.format import (
    EGO_TOPIC,
    FRAME_TOPIC,
    GHOSTS_TOPIC,
    LABELS_TOPIC,
    PREFIXES,
    RESULT_METADATA,
    TRUTH_TOPIC,
    DriveLogWriter,
)
from sim.drivelogs.foxglove import FoxgloveChannels
from sim.policies import Observation, Policy, PolicyOutput
from sim.runner import rollout
from sim.scenarios import Scenario, build_batch, episode_steps, resolve_suite
from sim.sensors import detect_objects, ground_truth, render_frame
from sim.sensors.objects import pad_ghosts, valid_slots
from sim.state import WorldState
from sim.types import ObjectList, SensorFrame

# Whether recorders write the Foxglove channels unless told (`foxglove=False`: tensor channels only).
FOXGLOVE_CHANNELS = True


def drive_name(scenario: str, seed: int) -> str:
    """The drive's identity and file stem: `<scenario>-<seed, 6 digits>`."""
    return f"{scenario}-{seed:06d}"


@dataclass(frozen=True)
class SuiteOrder:
    """A suite's name and its scenarios in order: recorded with each drive (`suite`, `suite_position`), so
    readers take a folder's drives in the order the suite runs them (`sim.drivelogs.index.suite_order`)."""

    name: str
    scenarios: tuple[str, ...]

    @classmethod
    def of(cls, suite: str) -> SuiteOrder:
        return cls(suite, tuple(s.name for s in resolve_suite(suite)))

    def metadata(self, scenario: str) -> dict[str, str]:
        if scenario not in self.scenarios:
            raise ValueError(f"SuiteOrder: scenario {scenario!r} is not in suite {self.name!r}")
        return {"suite": self.name, "suite_position": str(self.scenarios.index(scenario))}


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
        self.steps = 0

    def observe(self, state: WorldState, obs: Observation, plan: PolicyOutput) -> None:
        """The `StepObserver` hook: one message per topic per episode."""
        sensed = obs.detections if obs.detections is not None else detect_objects(state, self.raster)
        self._write_state(state, obs.frame, sensed)
        for b, log in enumerate(self.writers):
            time_s = float(obs.frame.time[b])
            for topic, tensors in _stack_outputs(plan, b).items():
                if tensors:
                    log.write(topic, time_s, tensors)
            if self.foxglove:
                self.foxglove[b].write_step(state, obs.frame, plan, b)
        self.steps += 1

    def _write_state(self, state: WorldState, frame: SensorFrame, sensed: ObjectList) -> None:
        """The topics of one state (`STATE_TOPICS`): the frame, ego, true agents, labels and ghosts."""
        contracts = {FRAME_TOPIC: frame, EGO_TOPIC: state.ego, TRUTH_TOPIC: state.agents,
                     LABELS_TOPIC: ground_truth(state, self.raster)}  # fmt: skip
        ghosts = pad_ghosts(sensed)
        for b, log in enumerate(self.writers):
            time_s = float(frame.time[b])
            for topic, contract in contracts.items():
                log.write(topic, time_s, contract.index(b).to_flat(PREFIXES[topic]))
            # Only the ghosts reported (most frames have none): a third of the bytes of all G slots.
            log.write(GHOSTS_TOPIC, time_s, valid_slots(ghosts.index(b)).to_flat(PREFIXES[GHOSTS_TOPIC]))

    def close(self, final: WorldState, errors: Sequence[str | None]) -> list[Path]:
        """Write the `final` state after the last observed step and how each drive ended (`errors`, one per
        drive: the policy's error or None), then finish the files."""
        if len(errors) != len(self.writers):
            raise ValueError(f"DriveRecorder.close: {len(errors)} errors for {len(self.writers)} drives")
        self._write_state(final, render_frame(final, self.raster), detect_objects(final, self.raster))
        for log, error in zip(self.writers, errors, strict=True):
            log.add_metadata(RESULT_METADATA, {"steps": str(self.steps), "final_frame": "1", "error": error or ""})
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
    timing: Timing = Timing(),
    suite: SuiteOrder | None = None,
) -> DriveRecorder:
    """A recorder for one batch of `scenario` (one episode per seed) driven by `policy`, with the drives'
    provenance (scenario, family, seed, policy, and the suite and the scenario's place in it when given)
    and the frames' raster and the simulation's timing as metadata (`foxglove`: also the Foxglove
    channels)."""
    drives = [drive_name(scenario.name, s) for s in seeds]
    policy_name = getattr(policy, "name", type(policy).__name__)  # the registry's name, e.g. pdm-gt
    shared = {
        "scenario": scenario.name,
        "family": scenario.family,
        "policy": policy_name,
        "raster": json.dumps(asdict(raster)),  # so a job reading the logs knows the frames' geometry
        "timing": json.dumps(asdict(timing)),
        **(suite.metadata(scenario.name) if suite is not None else {}),
    }
    return DriveRecorder(out, drives, [{**shared, "seed": str(s)} for s in seeds], raster, foxglove)


def record_drives(
    scenario: Scenario,
    seeds: Sequence[int],
    policy: Policy,
    out: str | Path,
    raster: RasterConfig = RasterConfig(),
    foxglove: bool = FOXGLOVE_CHANNELS,
    timing: Timing = Timing(),
    suite: SuiteOrder | None = None,
) -> list[Path]:
    """Drive `scenario` for every seed (one batch) with `policy` and write one log per drive (`foxglove`: with
    the Foxglove channels; `suite`: the suite it belongs to, see `drive_recorder`)."""
    recorder = drive_recorder(out, scenario, seeds, policy, raster, foxglove, timing, suite)
    try:
        final, _, errors = rollout(build_batch(scenario, list(seeds), timing=timing), policy,
                                   episode_steps(scenario, timing), timing=timing, raster=raster,
                                   observer=recorder.observe)  # fmt: skip
    except BaseException:
        recorder.abort()
        raise
    return recorder.close(final, errors)


def record_suite(
    suite: str,
    seeds: Sequence[int],
    policy: Policy,
    out: str | Path,
    raster: RasterConfig = RasterConfig(),
    *,
    duration: float | None = None,
    batch_size: int = 8,
    foxglove: bool = FOXGLOVE_CHANNELS,
    progress: Callable[[str, int], None] | None = None,
    timing: Timing = Timing(),
) -> list[Path]:
    """Drive every scenario of `suite` for every seed (`batch_size` seeds simulated together; `duration`
    overrides the scenarios' own, s; `timing`: the simulation's, as `record_drives`) and write one log per
    drive, each knowing its place in the suite; `progress(scenario, drives)` after each scenario."""
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"record_suite.batch_size: expected an int >= 1, got {batch_size!r}")
    if duration is not None and not duration > 0:
        raise ValueError(f"record_suite.duration: expected None or > 0 s, got {duration!r}")
    order, written = SuiteOrder.of(suite), []
    for scenario in resolve_suite(suite):
        if duration is not None:
            scenario = scenario.with_overrides({"duration": duration})
        for start in range(0, len(seeds), batch_size):
            batch = list(seeds[start : start + batch_size])
            written += record_drives(scenario, batch, policy, out, raster, foxglove, timing, suite=order)
        if progress is not None:
            progress(scenario.name, len(seeds))
    return written
