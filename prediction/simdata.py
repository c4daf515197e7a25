"""Prediction training windows from simulator episodes.

    cfg = SimWindowsConfig(suite="hard", policy="pdm-gt", seeds=tuple(range(32)))
    windows = simulate_windows(cfg)
    save_windows(windows, "data/sim-windows.safetensors", {"config": describe(cfg)})
    windows, meta = load_windows("data/sim-windows.safetensors")
    episode, episodes = window_episodes(cfg)  # split by episode, never by window

A driving policy drives every scenario of a suite for each seed (seeds run as
one batch, `episodes_per_batch` at a time, as `perception.data` does). Every
`sample_dt` (every 4 sim steps) the box centre of every agent, whether it is
present, its class and size, and the ego's pose are sampled (`EpisodeSamples`,
world frame). `cut_windows` then cuts windows of `HISTORY + HORIZON` samples
around every current sample k that has `HISTORY - 1` samples before it and
`HORIZON` after it inside the episode.

Frame: positions are in the ego frame at the window's current step, exactly
the frame of `Tracks` and `Forecast` (`sim.sensors.pose.SensorPose`: origin at
the ego box centre `sim.geometry.ego_center`, x forward along the ego heading,
y left), so windows line up with what the tracker hands the predictor.

Causality: a window holds positions and presence, and the lanes near the ego
at the current step (map knowledge, `sim.sensors.lanes`); everything that
decides its slots (which agents, in which order, their class and size) and the
lanes are read at the current step, never later. Steps after the current one are labels
(`TrajectoryWindows.future`); a model reads `TrajectoryWindows.observed` only.

Window order is deterministic: scenario, then seed, then current step; every
episode of a scenario gives the same number of windows (windows with no agent
in range are kept, every slot invalid), so `window_episodes(cfg)` names each
window's episode without simulating.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm import tqdm

from core.config import ConfigError, Timing, require
from core.contracts import ContractError, TensorContract, spec
from core.io import atomic_path
from prediction.windows import HISTORY, HORIZON, SAMPLE_DT, TrajectoryWindows, no_lanes
from sim.policies import Observation, PolicyOutput, make_policy
from sim.runner import rollout
from sim.scenarios import Scenario, build_batch, episode_steps, resolve_suite
from sim.sensors.lanes import lanes_near
from sim.sensors.pose import GEOMETRY_DTYPE, SensorPose
from sim.state import NUM_CLASSES, AgentState, EgoState, WorldState

log = logging.getLogger(__name__)

FORMAT = "drivestack-windows/2"
LANELESS_FORMAT = "drivestack-windows/1"  # before windows carried lanes: read as windows without a map
TIMING = Timing(sample_dt=SAMPLE_DT, history_steps=HISTORY, horizon_steps=HORIZON)
# Shortest episode that holds one window: samples 0 .. HISTORY + HORIZON - 1.
MIN_DURATION = (HISTORY + HORIZON - 1) * SAMPLE_DT


class WindowsFileError(ValueError):
    """A windows file is missing, truncated, corrupted or does not hold valid windows."""


@dataclass(frozen=True)
class SimWindowsConfig:
    """What to simulate and how to cut it into windows.

    Attributes:
        suite: suite name, scenario name or .yaml path (`sim.scenarios.resolve_suite`).
        policy: the ego's driving policy (`sim.policies.make_policy`).
        seeds: episode seeds, each run in every scenario.
        duration: overrides every scenario's duration, s (None keeps the files'); at
            least `MIN_DURATION` (7.6 s), the span of one window.
        stride: samples between the current steps of consecutive windows of an episode.
        max_agents: A, agent slots per window; when more agents are in range, the
            `max_agents` nearest the ego at the current step are kept (nearest first).
        radius: agents farther than this from the ego box centre at the current step
            get no slot, m.
        episodes_per_batch: seeds simulated together as one batch.
    """

    suite: str = "hard"
    policy: str = "pdm-gt"
    seeds: tuple[int, ...] = tuple(range(8))
    duration: float | None = None
    stride: int = 1
    max_agents: int = 64
    radius: float = 60.0
    episodes_per_batch: int = 8

    def __post_init__(self) -> None:
        o = "SimWindowsConfig"
        require(isinstance(self.suite, str) and self.suite != "", o, "suite", "a suite or scenario name", self.suite)
        require(isinstance(self.policy, str) and self.policy != "", o, "policy", "a policy name", self.policy)
        seeds_ok = isinstance(self.seeds, tuple) and len(self.seeds) >= 1 and all(_is_int(s, 0) for s in self.seeds)
        require(seeds_ok, o, "seeds", "a non-empty tuple of ints >= 0", self.seeds)
        require(len(set(self.seeds)) == len(self.seeds), o, "seeds", "distinct seeds", self.seeds)
        duration_ok = self.duration is None or (_is_real(self.duration) and self.duration >= MIN_DURATION)
        require(duration_ok, o, "duration", f"None or >= {MIN_DURATION:g} s (one window)", self.duration)
        for name in ("stride", "max_agents", "episodes_per_batch"):
            require(_is_int(getattr(self, name), 1), o, name, "an int >= 1", getattr(self, name))
        require(_is_real(self.radius) and self.radius > 0, o, "radius", "a finite distance > 0 m", self.radius)


def _is_int(value: object, low: int) -> bool:
    # bool is an int subclass; True as a seed or a stride is a mistake.
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def describe(cfg: SimWindowsConfig) -> dict:
    """The config as JSON-ready values (for `save_windows` metadata)."""
    return {**asdict(cfg), "seeds": list(cfg.seeds)}


# -- sampling episodes -------------------------------------------------------


@dataclass(frozen=True)
class EpisodeSamples(TensorContract):
    """B episodes sampled every `sample_dt`: T samples of N agent slots, world frame.

    Sample t is sim step `t * sim_steps_per_sample`. Slot n is one agent for the
    whole episode (slots are never reused); it may enter or leave the scene.

    Attributes:
        xy: [B, T, N, 2] float, agent box centre, m, world frame.
        present: [B, T, N] bool, the agent is in the scene (`AgentState.valid`).
        kind: [B, T, N] long, `sim.state.AgentKind` (vehicle, pedestrian, cyclist).
        size: [B, T, N, 2] float > 0, box (length, width), m.
        ego_center: [B, T, 2] float, ego box centre (`sim.geometry.ego_center`), m, world frame.
        ego_yaw: [B, T] float, ego heading, rad.
        lanes: [B, T, N, P, 2] float, the lane centrelines near the ego (`sim.sensors.lanes`), m, in the
            frame of `ego_center` and `ego_yaw` at that sample (a window's frame); 0 where not valid.
        lanes_valid: [B, T, N, P] bool.
    """

    xy: Tensor = spec(("B", "T", "N", 2))
    present: Tensor = spec(("B", "T", "N"), "bool")
    kind: Tensor = spec(("B", "T", "N"), "long", low=0, high=NUM_CLASSES - 1)
    size: Tensor = spec(("B", "T", "N", 2), low=0.0)
    ego_center: Tensor = spec(("B", "T", 2))
    ego_yaw: Tensor = spec(("B", "T"))
    lanes: Tensor = spec(("B", "T", "L", "P", 2))
    lanes_valid: Tensor = spec(("B", "T", "L", "P"), "bool")

    MASK_FIELD = "present"

    @property
    def num_samples(self) -> int:
        return int(self.present.shape[1])


class _Sampler:
    """Rollout observer: keeps every `every`-th state's agents and ego pose (on the CPU)."""

    def __init__(self, every: int):
        self.every = every
        self.rows: list[dict[str, Tensor]] = []

    def __call__(self, state: WorldState, obs: Observation, plan: PolicyOutput) -> None:
        self.offer(state)

    def offer(self, state: WorldState) -> None:
        """Record `state` when its step is a sample step (every episode of a batch shares the step)."""
        if int(state.step[0]) % self.every == 0:
            self.rows.append(_sample(state))

    def samples(self) -> EpisodeSamples:
        stacked = {name: torch.stack([row[name] for row in self.rows], dim=1) for name in self.rows[0]}
        return EpisodeSamples(**stacked)


def _sample(state: WorldState) -> dict[str, Tensor]:
    """One sample of every episode of `state`: the tensors of `EpisodeSamples` without the T axis."""
    lanes = lanes_near(state.map, SensorPose.of(state.ego))
    row = sample_row(state.ego, state.agents, lanes.points, lanes.valid)
    return {name: value.detach().cpu() for name, value in row.items()}


def sample_row(ego: EgoState, agents: AgentState, lanes: Tensor, lanes_valid: Tensor) -> dict[str, Tensor]:
    """The tensors of `EpisodeSamples` without the T axis, for the ego and agents of one time and the lanes
    `[B, N, P, 2]` near the ego then, in its frame (`SensorPose.of(ego)`)."""
    pose = SensorPose.of(ego)  # the sensor's own float64 pose: windows use the tracker's frame
    return {
        "xy": agents.xy.to(GEOMETRY_DTYPE),
        "present": agents.valid,
        "kind": agents.kind,
        "size": torch.stack((agents.length, agents.width), dim=-1),
        "ego_center": pose.center,
        "ego_yaw": pose.yaw,
        "lanes": lanes.to(GEOMETRY_DTYPE),
        "lanes_valid": lanes_valid,
    }


def sample_episodes(
    scenario: Scenario, seeds: list[int], policy: str, progress: Callable[[int], None] | None = None
) -> tuple[EpisodeSamples, list[str | None]]:
    """Drive one batch of episodes (one per seed) and sample it every `SAMPLE_DT`.

    Returns the samples ([B = len(seeds), T = steps // 4 + 1, ...], the final state
    included when it falls on a sample step) and each episode's policy error or None.
    """
    state = build_batch(scenario, seeds, timing=TIMING)
    sampler = _Sampler(TIMING.sim_steps_per_sample)
    steps = episode_steps(scenario, TIMING)
    final, _, errors = rollout(state, make_policy(policy), steps, timing=TIMING, observer=sampler, progress=progress)
    sampler.offer(final)  # the observer sees steps 0 .. steps-1; the last sample may be the final state
    return sampler.samples(), errors


# -- cutting windows ---------------------------------------------------------


def window_currents(num_samples: int, stride: int) -> range:
    """Current sample indices of an episode of `num_samples` samples: HISTORY - 1 before, HORIZON after."""
    return range(HISTORY - 1, num_samples - HORIZON, stride)


def _select_slots(now_xy: Tensor, now_present: Tensor, max_agents: int, radius: float) -> tuple[Tensor, Tensor]:
    """The slots of one current step: agents present within `radius`, nearest first.

    Args:
        now_xy: [B, N, 2] ego-frame positions at the current step, m.
        now_present: [B, N] bool, present at the current step.
    Returns:
        index [B, A] long into N and valid [B, A] bool, A = min(max_agents, N); the
        valid slots come first, ordered by distance to the ego.
    """
    distance = now_xy.norm(dim=-1)  # (B, N)
    candidate = now_present & (distance <= radius)
    key = torch.where(candidate, distance, torch.full_like(distance, math.inf))
    slots = min(max_agents, int(key.shape[1]))
    index = torch.argsort(key, dim=1, stable=True)[:, :slots]  # (B, A)
    return index, torch.gather(candidate, 1, index)


def _gather_agents(values: Tensor, index: Tensor) -> Tensor:
    """values [B, N, ...] -> [B, A, ...] at agent `index [B, A]`."""
    shape = (*index.shape, *values.shape[2:])
    return torch.gather(values, 1, index.reshape(*index.shape, *[1] * (values.dim() - 2)).expand(shape))


def _window_at(samples: EpisodeSamples, k: int, max_agents: int, radius: float) -> TrajectoryWindows:
    """The B windows (one per episode) whose current step is sample `k`."""
    span = slice(k - HISTORY + 1, k + HORIZON + 1)
    c, s = torch.cos(samples.ego_yaw[:, k]), torch.sin(samples.ego_yaw[:, k])
    pose = SensorPose(center=samples.ego_center[:, k], yaw=samples.ego_yaw[:, k], cos=c, sin=s)
    xy = pose.to_ego(samples.xy[:, span].transpose(1, 2))  # (B, N, L, 2), ego frame at step k
    present = samples.present[:, span].transpose(1, 2)  # (B, N, L)
    now = HISTORY - 1
    index, valid = _select_slots(xy[:, :, now], present[:, :, now], max_agents, radius)
    present = _gather_agents(present, index) & valid[..., None]
    xy = torch.where(present[..., None], _gather_agents(xy, index), 0.0)
    # Class and size at the current step: nothing about a slot comes from its future.
    kind = _gather_agents(samples.kind[:, k], index)
    class_probs = torch.nn.functional.one_hot(kind, NUM_CLASSES).float()
    class_probs = torch.where(valid[..., None], class_probs, 1.0 / NUM_CLASSES)  # the filler of `pad_agents`
    size = torch.where(valid[..., None], _gather_agents(samples.size[:, k], index), 1.0)
    return TrajectoryWindows(xy=xy.float(), present=present, class_probs=class_probs, size=size.float(), valid=valid,
                             lanes=samples.lanes[:, k].float(), lanes_valid=samples.lanes_valid[:, k],
                             history=HISTORY)  # fmt: skip


def cut_windows(
    samples: EpisodeSamples, stride: int = 1, max_agents: int = 64, radius: float = 60.0
) -> TrajectoryWindows:
    """Every window of every episode of `samples`, episode-major then by current step.

    Returns S = B * len(window_currents(T, stride)) windows of
    A = min(max_agents, N) slots (see `SimWindowsConfig` for the selection),
    positions in the ego frame of each window's current step, float32.
    """
    for name, value in (("stride", stride), ("max_agents", max_agents)):
        if not _is_int(value, 1):
            raise ValueError(f"cut_windows.{name}: expected an int >= 1, got {value!r}")
    if not (_is_real(radius) and radius > 0):
        raise ValueError(f"cut_windows.radius: expected a finite distance > 0 m, got {radius!r}")
    currents = window_currents(samples.num_samples, stride)
    if len(currents) == 0:
        raise ValueError(
            f"cut_windows: {samples.num_samples} samples hold no window of {HISTORY + HORIZON} samples "
            f"(an episode of at least {MIN_DURATION:g} s)"
        )
    per_step = [_window_at(samples, k, max_agents, radius) for k in currents]

    def stack(name: str) -> Tensor:
        return torch.stack([getattr(w, name) for w in per_step], dim=1).flatten(0, 1)  # (B K, ...)

    return TrajectoryWindows(**{name: stack(name) for name in TrajectoryWindows.field_names()}, history=HISTORY)


# -- the job -----------------------------------------------------------------


def _scenarios(cfg: SimWindowsConfig) -> list[Scenario]:
    chosen = resolve_suite(cfg.suite)
    if cfg.duration is not None:
        return [s.with_overrides({"duration": cfg.duration}) for s in chosen]
    too_short = [f"{s.name} ({s.duration:g} s)" for s in chosen if s.duration < MIN_DURATION]
    if too_short:
        raise ConfigError(
            f"SimWindowsConfig.suite: scenarios {', '.join(too_short)} are shorter than one window "
            f"({MIN_DURATION:g} s); set SimWindowsConfig.duration"
        )
    return chosen


def _batches(cfg: SimWindowsConfig) -> list[list[int]]:
    step = cfg.episodes_per_batch
    return [list(cfg.seeds[start : start + step]) for start in range(0, len(cfg.seeds), step)]


def simulate_windows(cfg: SimWindowsConfig, progress: bool = True) -> TrajectoryWindows:
    """Simulate every (scenario, seed) episode and cut it into windows (see the module docstring).

    Windows are ordered scenario, seed, current step (`window_episodes`); slots
    are trimmed to the fullest window. `progress` shows a bar over sim steps.
    """
    scenarios = _scenarios(cfg)
    make_policy(cfg.policy)  # an unknown name fails now, not after the first batch
    total = sum(episode_steps(s, TIMING) for s in scenarios) * len(_batches(cfg))  # the bar counts batch steps
    parts = []
    with tqdm(total=total, unit="step", desc=f"windows {cfg.policy}", disable=not progress) as bar:
        for scenario in scenarios:
            for seeds in _batches(cfg):
                samples, errors = sample_episodes(scenario, seeds, cfg.policy, bar.update)
                for seed, error in zip(seeds, errors, strict=True):
                    if error is not None:  # the ego stops; the other agents' motion is still good data
                        log.warning("%s seed %d: %s", scenario.name, seed, error)
                parts.append(cut_windows(samples, cfg.stride, cfg.max_agents, cfg.radius))
    return TrajectoryWindows.concat(parts).trimmed()


def window_episodes(cfg: SimWindowsConfig) -> tuple[Tensor, list[tuple[str, int]]]:
    """Which episode each window of `simulate_windows(cfg)` comes from, without simulating.

    Returns ([S] long index into the episode list, the episodes as (scenario name, seed)).
    Split training data by episode: windows of one episode overlap.
    """
    episodes: list[tuple[str, int]] = []
    counts: list[int] = []
    for scenario in _scenarios(cfg):
        samples = episode_steps(scenario, TIMING) // TIMING.sim_steps_per_sample + 1
        per_episode = len(window_currents(samples, cfg.stride))
        for seed in cfg.seeds:
            episodes.append((scenario.name, seed))
            counts.append(per_episode)
    index = torch.repeat_interleave(torch.arange(len(episodes)), torch.tensor(counts, dtype=torch.long))
    return index, episodes


# -- files -------------------------------------------------------------------


def save_windows(windows: TrajectoryWindows, path: str | Path, meta: dict) -> Path:
    """Write `windows` and the JSON-ready `meta` as one safetensors file, atomically.

    The tensors are stored under their field names; `history`, `dt` and `meta`
    go in the file's JSON header. A crash leaves the old file (or none), never
    a half-written one under `path`.
    """
    path = Path(path)
    windows.validate()
    try:
        meta_text = json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save_windows.meta: expected JSON-serialisable values ({exc})") from exc
    header = {"format": FORMAT, "history": str(windows.history), "dt": repr(float(windows.dt)), "meta": meta_text}
    tensors = {name: getattr(windows, name).detach().cpu().contiguous() for name in TrajectoryWindows.field_names()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def load_windows(path: str | Path) -> tuple[TrajectoryWindows, dict]:
    """Read and validate a file written by `save_windows`; returns (windows, meta).

    Raises WindowsFileError naming the file when it is missing, truncated,
    corrupted, lacks a tensor or a header field, or holds invalid windows.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            names = TrajectoryWindows.field_names()
            if header.get("format") == LANELESS_FORMAT:
                names = [name for name in names if name not in ("lanes", "lanes_valid")]
            missing = sorted(set(names) - set(f.keys()))
            if missing:
                raise WindowsFileError(f"{path}: corrupted windows file, missing tensors {missing}")
            tensors = {name: f.get_tensor(name) for name in names}
    except WindowsFileError:
        raise
    except FileNotFoundError as exc:
        raise WindowsFileError(f"{path}: no such windows file") from exc
    except Exception as exc:  # safetensors raises its own error type (truncated header, bad offsets) or OSError
        raise WindowsFileError(f"{path}: corrupted windows file ({exc})") from exc
    history, dt, meta = _read_header(path, header)
    if "lanes" not in tensors:
        tensors.update(no_lanes(int(tensors["valid"].shape[0])))
    windows = TrajectoryWindows(**tensors, history=history, dt=dt)
    try:
        windows.validate()
    except ContractError as exc:
        raise WindowsFileError(f"{path}: invalid windows ({exc})") from exc
    return windows, meta


def _read_header(path: Path, header: dict[str, str]) -> tuple[int, float, dict]:
    """(history, dt, meta) from a windows file's header, each checked."""
    if header.get("format") not in (FORMAT, LANELESS_FORMAT):
        raise WindowsFileError(f"{path}: expected header format {FORMAT!r}, got {header.get('format')!r}")
    missing = sorted({"history", "dt", "meta"} - set(header))
    if missing:
        raise WindowsFileError(f"{path}: corrupted windows file, header lacks {missing}")
    try:
        history = int(header["history"])
    except ValueError as exc:
        raise WindowsFileError(f"{path}: header history: expected an int, got {header['history']!r}") from exc
    try:
        dt = float(header["dt"])
    except ValueError as exc:
        raise WindowsFileError(f"{path}: header dt: expected a float in s, got {header['dt']!r}") from exc
    try:
        meta = json.loads(header["meta"])
    except json.JSONDecodeError as exc:
        raise WindowsFileError(f"{path}: header meta: invalid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise WindowsFileError(f"{path}: header meta: expected a JSON object, got {type(meta).__name__}")
    return history, dt, meta
