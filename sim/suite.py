"""Run a suite of scenarios with one policy and write per-episode and summary metrics."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from core.config import FOLDER_OR_ABSENT, ConfigError, Timing, is_folder_or_absent
from core.distributed import all_gather_json, barrier, broadcast_json, process_group
from sim import journal, shards
from sim.config import RasterConfig
from sim.journal import RunInterrupted
from sim.metrics.table import (
    format_table,
    summarize,
    write_episodes_csv,
    write_summary_csv,
    write_summary_json,
)
from sim.policies import Observation, Policy, PolicyOutput, make_policy
from sim.recording import EpisodeRecorder
from sim.render import write_video
from sim.runner import EpisodeResult, rollout
from sim.scenarios import MissingData, Scenario, build_batch, episode_steps, resolve_suite
from sim.state import WorldState

log = logging.getLogger(__name__)


class DriveLog(Protocol):
    """Records the episodes of one batch (`sim.drivelogs.recorder.DriveRecorder` is one)."""

    def observe(self, state: WorldState, obs: Observation, plan: PolicyOutput) -> None: ...

    def close(self, final: WorldState, errors: Sequence[str | None]) -> object:
        """Finish the batch's logs: `final` is the state after the last step, `errors` the policy's per episode."""

    def abort(self) -> None: ...


# (scenario, seeds of the batch, policy) -> the batch's drive log: the command line passes
# `sim.drivelogs.recorder.drive_recorder` bound to the output folder; a caller may pass any other writer.
DriveLogFactory = Callable[[Scenario, Sequence[int], Policy], DriveLog]


@dataclass(frozen=True)
class SuiteConfig:
    """One `drivestack sim` job.

    Attributes:
        suite: packaged suite name, suite file or scenario file.
        policy: registered policy name.
        seeds: episodes per scenario (seeds first_seed .. first_seed + seeds - 1).
        out: output directory.
        batch_size: episodes simulated together.
        device: torch device ("cpu", "cuda").
        render: episodes per scenario rendered to video (the first seeds).
        video_format: "mp4" or "gif".
        first_seed: the first seed.
        render_seeds: (scenario name, seed) pairs also rendered, whatever `render` says (the batches
            stay as they are, so each episode is the one a run without rendering drives).
        policy_settings: what identifies the policy beyond its name (weights, backend, options),
            stored with the run so that `--resume` refuses to finish it with another policy.
    """

    suite: str
    policy: str
    seeds: int = 20
    out: Path = Path("runs/sim")
    batch_size: int = 32
    device: str = "cpu"
    render: int = 0
    video_format: str = "mp4"
    first_seed: int = 0
    timing: Timing = Timing()
    raster: RasterConfig = RasterConfig()
    render_seeds: tuple[tuple[str, int], ...] = ()
    policy_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ConfigError(f"SuiteConfig.seeds: expected >= 1, got {self.seeds}")
        if self.batch_size < 1:
            raise ConfigError(f"SuiteConfig.batch_size: expected >= 1, got {self.batch_size}")
        if self.render < 0:
            raise ConfigError(f"SuiteConfig.render: expected >= 0, got {self.render}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"SuiteConfig.device: {self.device!r} asked for, but CUDA is not available here")
        if not is_folder_or_absent(self.out):
            raise ConfigError(f"SuiteConfig.out: expected {FOLDER_OR_ABSENT}, got {str(self.out)!r}")
        if self.video_format not in ("mp4", "gif"):
            raise ConfigError(f"SuiteConfig.video_format: expected 'mp4' or 'gif', got {self.video_format!r}")


def _run_batch(
    scenario: Scenario,
    seeds: Sequence[int],
    policy: Policy,
    cfg: SuiteConfig,
    recorder: EpisodeRecorder | None,
    progress: Callable[[int], None],
    drive_logs: DriveLogFactory | None = None,
) -> list[EpisodeResult]:
    state = build_batch(scenario, list(seeds), device=cfg.device, timing=cfg.timing)
    steps = episode_steps(scenario, cfg.timing)
    drive_log = drive_logs(scenario, seeds, policy) if drive_logs is not None else None
    watchers = [w.observe for w in (recorder, drive_log) if w is not None]

    def observer(s: WorldState, obs: Observation, plan: PolicyOutput) -> None:
        for watch in watchers:
            watch(s, obs, plan)

    try:
        final, metrics, errors = rollout(state, policy, steps, timing=cfg.timing, raster=cfg.raster,
                                     observer=observer if watchers else None, progress=progress)  # fmt: skip
    except BaseException:
        if drive_log is not None:
            drive_log.abort()  # the episodes are run again one by one, and logged then
        raise
    if drive_log is not None:
        drive_log.close(final, errors)
    rows = []
    for i, seed in enumerate(seeds):
        values = {name: float(v[i]) for name, v in metrics.items()}
        rows.append(EpisodeResult(scenario.name, scenario.family, seed, values if errors[i] is None else {}, errors[i]))
    return rows


def _run_isolated(
    scenario: Scenario,
    seeds: Sequence[int],
    policy: Policy,
    cfg: SuiteConfig,
    progress,
    drive_logs: DriveLogFactory | None = None,
) -> list[EpisodeResult]:
    """After a batch raised: one episode at a time, so one failure costs only itself."""
    rows = []
    for seed in seeds:
        try:
            rows += _run_batch(scenario, [seed], policy, cfg, None, progress, drive_logs)
        except Exception as exc:  # noqa: BLE001 - reported per episode, the suite goes on
            log.exception("episode %s seed %d failed", scenario.name, seed)
            rows.append(EpisodeResult(scenario.name, scenario.family, seed, {}, f"{type(exc).__name__}: {exc}"))
    return rows


def run_suite(
    cfg: SuiteConfig,
    policy: Policy | None = None,
    drive_logs: DriveLogFactory | None = None,
    resume: bool = False,
) -> list[EpisodeResult]:
    """Run every scenario of the suite for `cfg.seeds` seeds; write results under `cfg.out`, and each
    episode's drive log through `drive_logs` when given.

    Each finished batch is appended to `cfg.out/episodes.jsonl` (`sim.journal`). With `resume`, the
    batches already there are read back instead of simulated; a folder holding an interrupted run is
    never overwritten without it. Ctrl-C raises `RunInterrupted`, saying what was kept.

    In a process group (torchrun, `core.distributed`) each rank simulates its share of the batches
    (`sim.shards`), every rank returns all the episodes, and rank 0 writes the outputs one process would.
    """
    scenarios = resolve_suite(cfg.suite)
    policy = policy or make_policy(cfg.policy)
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    plan = [(s, seeds[i : i + cfg.batch_size]) for s in scenarios for i in range(0, len(seeds), cfg.batch_size)]
    rank, world = process_group()
    if world > 1:
        return _run_shared(plan, scenarios, policy, cfg, drive_logs, resume, rank, world)
    with journal.exclusive(cfg.out):
        ledger = open_journal(cfg.out, run_settings(cfg, scenarios), _episodes(plan), resume)
        results = _run_plan(plan, ledger, policy, cfg, drive_logs)
    write_results(results, cfg)
    return results


def _run_shared(
    plan: Sequence[tuple[Scenario, list[int]]],
    scenarios: Sequence[Scenario],
    policy: Policy,
    cfg: SuiteConfig,
    drive_logs: DriveLogFactory | None,
    resume: bool,
    rank: int,
    world: int,
) -> list[EpisodeResult]:
    """This rank's share of `plan` into its own journal, then every rank's batches merged; rank 0 writes
    the run's journal and results as one process would, then the rank journals go. ("cuda" is this rank's
    own GPU: `core.distributed.join_process_group`.)"""
    mine = shards.share(plan, rank, world)
    folder = shards.rank_folder(cfg.out, rank)
    settings = run_settings(cfg, scenarios)
    earlier = broadcast_json(_finished_batches(cfg.out, settings) if resume and rank == 0 else [], world)
    with contextlib.ExitStack() as locks:
        if rank == 0:
            locks.enter_context(journal.exclusive(cfg.out))
        locks.enter_context(journal.exclusive(folder))
        ledger = open_journal(folder, settings, _episodes(mine), resume, keep=set(map(shards.key, mine)))
        _adopt(ledger, earlier, mine)
        rows = _run_plan(mine, ledger, policy, cfg, drive_logs)
        gathered = all_gather_json(shards.encode([shards.key(b) for b in mine], rows), world)
        batches = shards.merge(gathered, plan)
        if rank == 0:
            merged = journal.start(cfg.out, settings, _episodes(plan))
            for (scenario, seeds), batch in batches.items():
                merged.append(scenario, seeds, batch)
            write_results([row for batch in batches.values() for row in batch], cfg)
    barrier(world)  # the run's journal is written: the rank journals are no longer needed
    shutil.rmtree(folder)
    barrier(world)
    if rank == 0 and not any(folder.parent.iterdir()):
        folder.parent.rmdir()  # ranks on other machines keep their folders on their own disks
    return [row for batch in batches.values() for row in batch]


def _run_plan(
    plan: Sequence[tuple[Scenario, list[int]]],
    ledger: journal.Journal,
    policy: Policy,
    cfg: SuiteConfig,
    drive_logs: DriveLogFactory | None,
) -> list[EpisodeResult]:
    """Every batch of `plan` the journal lacks, appended to it as it finishes; the episodes in plan order."""
    keys = [(scenario.name, chunk) for scenario, chunk in plan]
    done = sum(episode_steps(s, cfg.timing) * len(chunk) for s, chunk in plan if ledger.has(s.name, chunk))
    total = sum(episode_steps(s, cfg.timing) * len(chunk) for s, chunk in plan)
    quiet = True if process_group()[0] > 0 else None  # one bar, rank 0's, on a terminal the ranks share
    with tqdm(total=total, initial=done, unit="step", desc=f"{cfg.policy}", disable=quiet) as bar:
        try:
            for scenario, chunk in plan:
                if not ledger.has(scenario.name, chunk):
                    ledger.append(scenario.name, chunk, _run_and_render(scenario, chunk, policy, cfg, bar, drive_logs))
        except KeyboardInterrupt as exc:
            raise RunInterrupted(
                f"interrupted: {ledger.episodes} of {ledger.total} episodes are kept in {ledger.path}; "
                "run the same drivestack sim command with --resume to finish the rest"
            ) from exc
    return ledger.results(keys)


def open_journal(
    out: Path, settings: dict[str, Any], total: int, resume: bool, keep: set[shards.BatchKey] | None = None
) -> journal.Journal:
    """The journal in `out`: the stored one when resuming (its settings must match), else a new one. `keep`:
    the batches this process runs (a rank's share); stored batches outside it, from a run with another
    number of ranks, are left to the ranks that run them now."""
    stored = _stored(out)
    if stored is not None and resume:
        changed = journal.differences(stored.settings, settings)
        if changed:
            raise ConfigError(f"{stored.path}: cannot resume a different run ({'; '.join(changed)})")
        if keep is not None:
            stored.batches = {k: rows for k, rows in stored.batches.items() if k in keep}
        log.info("resuming %s: %d of %d episodes already run", stored.path, stored.episodes, stored.total)
        return stored
    if stored is not None and not stored.finished:
        raise ConfigError(
            f"{out} holds an interrupted run ({stored.episodes} of {stored.total} episodes in "
            f"{stored.path.name}); pass --resume to finish it, or choose another --out"
        )
    return journal.start(out, settings, total)


def _episodes(plan: Sequence[tuple[Scenario, list[int]]]) -> int:
    return sum(len(seeds) for _, seeds in plan)


def _finished_batches(out: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The batches of `out`'s run journal (written by rank 0 when a run's ranks merge), if it is this run's."""
    stored = _stored(out)
    if stored is None or journal.differences(stored.settings, settings):
        return []
    keys, rows = list(stored.batches), [row for episodes in stored.batches.values() for row in episodes]
    return shards.encode(keys, rows)


def _adopt(ledger: journal.Journal, earlier: list[dict[str, Any]], mine: Sequence[tuple[Scenario, list[int]]]) -> None:
    """Copy into this rank's journal the batches of its share an earlier run already finished."""
    done = shards.decode(earlier)
    for scenario, seeds in map(shards.key, mine):
        if (scenario, seeds) in done and not ledger.has(scenario, seeds):
            ledger.append(scenario, seeds, done[scenario, seeds])


def _stored(out: Path) -> journal.Journal | None:
    try:
        return journal.read(out)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; delete it to start the run over, or choose another --out") from exc


def run_settings(cfg: SuiteConfig, scenarios: Sequence[Scenario]) -> dict[str, Any]:
    """What must match for a stored run to be resumed: the scenarios' content (a digest), seeds, batches,
    raster, timing and policy (as JSON reads it back, so a stored run compares equal to the same settings)."""
    documents = json.dumps([s.document for s in scenarios], sort_keys=True, default=str)
    settings = {
        **_describe(cfg),
        "scenarios_sha256": hashlib.sha256(documents.encode()).hexdigest(),
        "raster": dataclasses.asdict(cfg.raster),
        "timing": dataclasses.asdict(cfg.timing),
        "policy_settings": dict(cfg.policy_settings),
    }
    return json.loads(json.dumps(settings, default=str))


def discard_other_run(cfg: SuiteConfig) -> None:
    """Remove the journals in `cfg.out` this process keeps (the run's; in a process group, rank 0 the run's
    and every rank its own) when they hold another run or cannot be read, so that resuming starts this run
    over instead of refusing. Each rank touches only its own files: no rank waits for another."""
    settings = run_settings(cfg, resolve_suite(cfg.suite))
    rank, world = process_group()
    folders = [cfg.out] if rank == 0 else []
    folders += [shards.rank_folder(cfg.out, rank)] if world > 1 else []
    for folder in folders:
        try:
            stored = journal.read(folder)
        except ConfigError:
            journal.discard_journal(folder)
            continue
        if stored is not None and journal.differences(stored.settings, settings):
            journal.discard_journal(folder)


def _run_and_render(
    scenario: Scenario,
    chunk: list[int],
    policy: Policy,
    cfg: SuiteConfig,
    bar: tqdm,
    drive_logs: DriveLogFactory | None,
) -> list[EpisodeResult]:
    """One batch's results (its episodes one by one if the batch raised), its videos written."""
    render_ids = [i for i, s in enumerate(chunk)
                  if s < cfg.first_seed + cfg.render or (scenario.name, s) in cfg.render_seeds]  # fmt: skip
    recorder = EpisodeRecorder(render_ids, cfg.raster) if render_ids else None
    try:
        rows = _run_batch(scenario, chunk, policy, cfg, recorder, bar.update, drive_logs)
    except MissingData:
        raise  # the scenario's data file is not there: no episode of it can run
    except Exception:  # noqa: BLE001 - isolate the failing episodes
        log.exception("batch of %s failed; retrying its episodes one by one", scenario.name)
        return _run_isolated(scenario, chunk, policy, cfg, bar.update, drive_logs)
    for i in render_ids:
        path = cfg.out / "videos" / f"{scenario.name}_seed{chunk[i]}.{cfg.video_format}"
        write_video(recorder.frames(i), path, fps=round(1.0 / cfg.timing.sim_dt), raster=cfg.raster)
    return rows


def write_results(results: list[EpisodeResult], cfg: SuiteConfig) -> dict:
    records = [dataclasses.asdict(r) for r in results]
    summary = summarize(records)
    write_episodes_csv(records, cfg.out / "episodes.csv")
    write_summary_json({"config": _describe(cfg), **summary}, cfg.out / "summary.json")
    write_summary_csv(summary, cfg.out / "summary.csv")
    print(format_table(summary))
    return summary


def _describe(cfg: SuiteConfig) -> dict:
    return {
        "suite": cfg.suite,
        "policy": cfg.policy,
        "seeds": cfg.seeds,
        "first_seed": cfg.first_seed,
        "batch_size": cfg.batch_size,
        "device": cfg.device,
    }
