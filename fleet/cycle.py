"""`drivestack fleet cycle`: the data engine's loop at small scale.

    drivestack fleet cycle --registry models --work runs/fleet/cycles --suite demo --drives 2 --steps 50

One cycle, in `work/cycle-NNN/`:

    record    the fleet drives: every scenario of `suite` for `drives` seeds, logged (`logs/`). The
              driver is `policy` (default pdm-gt, the rule-based planner on ground truth: in simulation
              it stands in for the human drivers whose drives a fleet logs and a planner imitates)
    retrain   the current model fine-tuned on those logs (`fleet train --stage end2end`, `train/`)
    evaluate  the candidate and the current model in closed loop on the gate's episodes
    promote   the candidate becomes current only if it scores at least as well (`fleet promote`),
              and is then exported; `cycle.json` records what happened, with the planning loss
              before and after fine-tuning on the cycle's held-out drives

An empty registry is first given the starting model (`initial`, default the
shipped stack) as version 1, promoted without a comparison. Seeds of recorded
drives are new in every cycle (`RECORD_SEEDS + 100 * cycle`) and clear of the
gate's (5000 on). A killed cycle is run again by the same command: drives
already logged are kept and training resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.config import require
from core.io import atomic_write_text
from fleet.registry import GateSettings, Registry, promote
from fleet.train import MANIFEST, VALIDATION, train_end2end
from sim.config import RasterConfig
from sim.drivelogs.recorder import SuiteOrder, drive_name, record_drives
from sim.policies import policy_at_raster
from sim.scenarios import resolve_suite
from stack.config import StackConfig
from stack.policy import stack_weights
from stack.train import EndToEndConfig

CYCLE_FILE = "cycle.json"
RECORD_SEEDS = 20000  # first seed of cycle 0's drives; each cycle takes the next 100


@dataclass(frozen=True)
class CycleConfig:
    """One turn of the data engine (see the module docstring).

    Attributes:
        registry: the model registry (`fleet.registry`).
        work: where each cycle's logs, training run and report go.
        suite: scenarios the fleet drives.
        drives: drives per scenario (at most 100).
        policy: the driver whose drives are logged.
        initial: the first model of an empty registry (None: the shipped stack, `stack.policy.stack_weights`).
        steps, batch_size, lr, warmup_frames, sigma: the end-to-end fine-tuning job's.
        val_fraction: drives held out of training (by drive).
        gate: the closed-loop regression gate.
    """

    registry: Path
    work: Path
    suite: str = "demo"
    drives: int = 2
    policy: str = "pdm-gt"
    initial: Path | None = None
    steps: int = 50
    batch_size: int = 4
    lr: float = 1e-4
    warmup_frames: int = 16
    sigma: float = 1.0
    val_fraction: float = 0.2
    gate: GateSettings = field(default_factory=GateSettings)

    def __post_init__(self) -> None:
        o = type(self).__name__
        require(isinstance(self.drives, int) and 1 <= self.drives <= 100, o, "drives", "an int in [1, 100]",
                self.drives)  # fmt: skip
        require(0.0 <= self.val_fraction < 1.0, o, "val_fraction", "in [0, 1)", self.val_fraction)


def next_cycle(work: Path) -> int:
    """The cycle to run: an unfinished one (no cycle.json) is run again, else the next number."""
    done = sorted(int(p.name.split("-")[1]) for p in work.glob("cycle-*") if p.name.split("-")[1].isdigit())
    unfinished = [n for n in done if not (work / f"cycle-{n:03d}" / CYCLE_FILE).is_file()]
    return unfinished[0] if unfinished else max(done, default=0) + 1


def record_fleet(cfg: CycleConfig, cycle: int, raster: RasterConfig, logs: Path) -> int:
    """Log every scenario's drives of this cycle; scenarios already fully logged are kept."""
    seeds = list(range(RECORD_SEEDS + 100 * cycle, RECORD_SEEDS + 100 * cycle + cfg.drives))
    policy = policy_at_raster(cfg.policy, raster)
    suite = SuiteOrder.of(cfg.suite)
    for scenario in resolve_suite(cfg.suite):
        if all((logs / f"{drive_name(scenario.name, s)}.mcap").is_file() for s in seeds):
            continue
        record_drives(scenario, seeds, policy, logs, raster, suite=suite)
    return len(list(logs.glob("*.mcap")))


def bootstrap(registry: Registry, cfg: CycleConfig) -> None:
    """An empty registry starts from `cfg.initial`, current without a comparison."""
    if registry.current is None:
        initial = stack_weights(cfg.initial)
        version = promote(registry, initial, cfg.gate)
        print(f"registry {registry.root}: started from {initial} as v{version.version:04d}")


def _held_out(path: Path) -> dict[str, float] | None:
    """The planning loss before and after fine-tuning on the cycle's held-out drives (None without any)."""
    if not path.is_file():
        return None
    validation = json.loads(path.read_text())
    return {"start": validation["start"]["total"], "trained": validation["trained"]["total"]}


def run_cycle(cfg: CycleConfig) -> dict[str, Any]:
    """One cycle (module docstring); returns and writes its report."""
    registry = Registry(cfg.registry)
    bootstrap(registry, cfg)
    cycle = next_cycle(cfg.work)
    folder = cfg.work / f"cycle-{cycle:03d}"
    current = registry.get(registry.current)
    weights = registry.root / current.checkpoint
    raster = StackConfig.from_dict(current.config).perception.detector.raster
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    drives = record_fleet(cfg, cycle, raster, folder / "logs")
    seconds["record"] = time.perf_counter() - start

    start = time.perf_counter()
    job = EndToEndConfig(out=folder / "train", weights=weights, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                         warmup_frames=cfg.warmup_frames, sigma=cfg.sigma, resume=True, progress=False)  # fmt: skip
    candidate = train_end2end(folder / "logs", job, cfg.val_fraction)
    seconds["retrain"] = time.perf_counter() - start

    start = time.perf_counter()
    manifest = json.loads((folder / "train" / MANIFEST).read_text())
    version = promote(registry, candidate, cfg.gate, manifest)
    seconds["evaluate_promote_export"] = time.perf_counter() - start

    report = {
        "cycle": cycle,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "drives_logged": drives,
        "trained_from": current.version,
        "candidate": version.version,
        "status": version.status,
        "score_mean": version.metrics["score_mean"],
        "current_score_mean": version.metrics.get("current_score_mean"),
        "current": registry.current,
        "export": version.export,
        "held_out_loss": _held_out(folder / "train" / VALIDATION),
        "seconds": seconds,
    }
    atomic_write_text(folder / CYCLE_FILE, json.dumps(report, indent=1) + "\n")
    return report
