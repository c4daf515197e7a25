"""`drivestack fleet federated`: federated averaging (FedAvg) of the predictor across simulated vehicles, against
centralised training on the same drives.

    drivestack fleet federated --logs logs --out runs/fleet/fedavg --vehicles 4 --rounds 10 --local-steps 25
    drivestack fleet federated ... --assign scenario --centralised    # non-IID vehicles, and the pooled baseline

Vehicles. The log folder is split by drive exactly as `fleet train` splits it (`split_drives`); the validation
drives never reach a vehicle. The training drives are dealt to V simulated vehicles:

    hash       by a salted hash of the drive name (`in_validation` with a salt of its own, so independent of the
               validation split): IID-ish, deterministic, and a new drive never moves an old one;
    scenario   by scenario family: the families, sorted, go round-robin to the vehicles, so each vehicle sees
               some families only (non-IID, where FedAvg usually loses to centralised training).

A vehicle's windows are cut from its own drives only, and every vehicle must hold at least one.

A round. Every vehicle starts from the global weights and runs `local_steps` steps of the shared training loop
(`prediction.train.train` with `initial=` the global weights) on its own windows: a fresh AdamW every round (the
standard FedAvg: optimiser state never leaves a vehicle), the learning rate a cosine from `lr` to 0 over the round
(no warm-up), data order and augmentation seeded per (round, vehicle). The server then averages the vehicles'
weights weighted by their sample counts (windows). The vehicles run one after another in this process: they are
simulated, and since each starts from the same global weights with its own seed, the result is what V vehicles
training in parallel would send back.

KL weight: constant (`kl_anneal_steps = 0`: beta = `kl_weight` from the first step) in the local runs and in the
centralised run. The loop's step restarts at 0 in every local run, so a schedule on it would restart every round;
a constant beta gives federated and centralised training the same objective at every step.

After every round the global model is scored on the validation windows (mixture NLL, minADE/minFDE of 20 samples)
and written atomically to `out/global.safetensors`, the rounds so far in its metadata; `out/rounds.json` is the
readable log. A killed run resumes (`resume`) from its last finished round and ends as one that ran through.

The centralised baseline (`centralised_train`): the same model, initial weights, batch size, peak LR and KL weight on
the training drives pooled, for rounds x vehicles x local_steps steps, so it processes as many samples as the
vehicles together (the fair equalisation: a FedAvg round costs V x S steps of compute). It is one run of the loop
(one cosine over all its steps), scored from its checkpoints at each round's sample count.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fleet.index import DriveEntry, LogIndex, build_index, in_validation, split_drives
from fleet.logs import LogError
from fleet.train import MANIFEST, log_windows
from prediction.api import TrajectoryPredictor
from prediction.checkpoint import PREFIX, load_predictor, load_predictor_weights, save_predictor
from prediction.config import PredictorConfig
from prediction.evaluate import evaluate_scene
from prediction.model import Predictor
from prediction.train import PredictionTrainConfig
from prediction.train import train as train_predictor
from prediction.windows import TrajectoryWindows
from sim.checkpoint import load_checkpoint
from sim.config import ConfigError
from sim.training import jsonable, latest_checkpoint, require, write_json

log = logging.getLogger(__name__)

ASSIGNMENTS = ("hash", "scenario")
KIND = "fleet-federated"
GLOBAL_NAME = "global.safetensors"
ROUNDS_NAME = "rounds.json"
CENTRAL_DIR = "centralised"
CENTRAL_NAME = "centralised.json"
SUMMARY_NAME = "summary.json"
SCRATCH_DIR = "local"  # the vehicles' local runs of the round in progress
VEHICLE_SALT = "fleet-vehicle:"  # makes the vehicle hash independent of the validation split's
SEED_STRIDE = 10_007  # between the seeds of consecutive (round, vehicle) local runs
# Config fields that may change between a run and its resumption without changing the result.
RESUMABLE_CHANGES = frozenset({"out", "resume", "stop_after_round", "device"})
HEADLINE = ("nll_joint", "min_ade")  # the table's metrics: whole-path mixture NLL (nats/step), minADE of 20 (m)


@dataclass(frozen=True)
class FederatedConfig:
    """A federated job and its centralised comparison.

    Attributes:
        out: output folder (global model, rounds log, the centralised run under `centralised/`).
        vehicles: simulated vehicles, each holding the training drives dealt to it.
        rounds: FedAvg rounds.
        local_steps: optimiser steps each vehicle takes per round.
        assign: how drives are dealt to vehicles: "hash" (IID-ish) or "scenario" (by scenario family, non-IID).
        val_fraction: drives held out for validation (by a hash of their name, as `fleet train`).
        eval_samples: samples per agent for minADE/minFDE.
        stop_after_round: end the run after this round (resume later); None runs every round.
        The other fields are those of `PredictionTrainConfig`, shared by the local and centralised runs.
    """

    out: Path = Path("runs/fleet/federated")
    vehicles: int = 4
    rounds: int = 10
    local_steps: int = 25
    assign: str = "hash"
    val_fraction: float = 0.2
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    kl_weight: float = 1.0
    kl_min: float = 0.07
    rotate: bool = True
    position_std: float = 0.05
    eval_samples: int = 20
    seed: int = 0
    resume: bool = False
    stop_after_round: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        o = type(self).__name__
        for name in ("vehicles", "rounds", "local_steps", "batch_size", "eval_samples"):
            value = getattr(self, name)
            require(_is_int(value) and value >= 1, o, name, "an int >= 1", value)
        require(self.assign in ASSIGNMENTS, o, "assign", f"one of {ASSIGNMENTS}", self.assign)
        require(_is_number(self.val_fraction) and 0 < self.val_fraction < 1, o, "val_fraction",
                "a number in (0, 1): the rounds are scored on the held-out drives", self.val_fraction)  # fmt: skip
        require(isinstance(self.predictor, PredictorConfig), o, "predictor", "a PredictorConfig", self.predictor)
        require(_is_number(self.lr) and self.lr > 0, o, "lr", "> 0", self.lr)
        for name in ("weight_decay", "kl_weight", "kl_min"):
            value = getattr(self, name)
            require(_is_number(value) and value >= 0, o, name, ">= 0", value)
        require(_is_number(self.grad_clip) and self.grad_clip > 0, o, "grad_clip", "> 0", self.grad_clip)
        require(_is_number(self.position_std) and self.position_std > 0, o, "position_std", "> 0 m",
                self.position_std)  # fmt: skip
        require(_is_int(self.seed) and self.seed >= 0, o, "seed", "an int >= 0", self.seed)
        stop = self.stop_after_round
        require(stop is None or (_is_int(stop) and 1 <= stop <= self.rounds), o, "stop_after_round",
                f"None or an int in [1, rounds = {self.rounds}]", stop)  # fmt: skip

    @property
    def steps_per_round(self) -> int:
        """Optimiser steps the whole fleet takes per round: the centralised run's steps per round."""
        return self.vehicles * self.local_steps

    @property
    def last_round(self) -> int:
        """The round this session ends after."""
        return self.stop_after_round or self.rounds

    def local_config(self, out: Path, seed: int) -> PredictionTrainConfig:
        """One vehicle's round: a complete short run of the training loop."""
        return self._train_config(out, steps=self.local_steps, checkpoint_every=self.local_steps, seed=seed,
                                  resume=False, stop_at=None)  # fmt: skip

    def centralised_config(self, out: Path) -> PredictionTrainConfig:
        """The pooled baseline: as many steps as the fleet takes, a checkpoint at every round's sample count."""
        stop = None if self.stop_after_round is None else self.stop_after_round * self.steps_per_round
        return self._train_config(out, steps=self.rounds * self.steps_per_round, checkpoint_every=self.steps_per_round,
                                  seed=self.seed, resume=self.resume, stop_at=stop)  # fmt: skip

    def _train_config(self, out: Path, **loop: Any) -> PredictionTrainConfig:
        return PredictionTrainConfig(
            out=out, predictor=self.predictor, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            warmup_steps=0, grad_clip=self.grad_clip, kl_weight=self.kl_weight, kl_anneal_steps=0, kl_min=self.kl_min,
            rotate=self.rotate, position_std=self.position_std, progress=False, device=self.device, **loop,
        )  # fmt: skip


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- the data: drives, their windows, the vehicles ------------------------------------------------


@dataclass
class LogSplit:
    """A log folder split by drive, every drive's prediction windows read once (runs on one folder share it)."""

    index: LogIndex
    val_fraction: float
    train: list[DriveEntry]
    validation: list[DriveEntry]
    windows: dict[str, TrajectoryWindows]  # by drive name; a drive too short for one window is absent

    def windows_of(self, drives: Sequence[DriveEntry]) -> TrajectoryWindows:
        """The windows of `drives`, in their order, agent slots padded to the widest and trimmed."""
        parts = [self.windows[d.drive] for d in drives if d.drive in self.windows]
        if not parts:
            raise LogError(f"log folder {self.index.root}: none of {[d.drive for d in drives]} is long enough "
                           "for one prediction window")  # fmt: skip
        return TrajectoryWindows.concat(parts).trimmed()


def read_split(logs: str | Path, val_fraction: float) -> LogSplit:
    """Index `logs` (broken logs reported and skipped), split by drive and cut every drive's windows."""
    index = build_index(logs)
    for name, error in index.broken.items():
        log.warning("skipped broken log %s: %s", name, error)
    train, validation = split_drives(index.drives, val_fraction)
    if not train:
        raise LogError(f"log folder {logs}: no training drives ({len(index.drives)} readable, "
                       f"{len(validation)} held out by val_fraction {val_fraction})")  # fmt: skip
    if not validation:
        raise LogError(f"log folder {logs}: val_fraction {val_fraction} holds out none of its {len(train)} drives; "
                       "the rounds are scored on held-out drives")  # fmt: skip
    windows = {}
    for entry in [*train, *validation]:
        try:
            windows[entry.drive] = log_windows(index, [entry])
        except LogError:  # too short for one window (log_windows has warned)
            continue
    return LogSplit(index, val_fraction, train, validation, windows)


def vehicle_by_hash(drive: str, vehicles: int) -> int:
    """The vehicle holding `drive`: a salted hash of its name, uniform over the vehicles (the same hash as the
    validation split, with another salt: the first v whose cumulative share (v + 1) / V it falls below)."""
    return next(v for v in range(vehicles) if in_validation(drive, (v + 1) / vehicles, VEHICLE_SALT))


def scenario_of(entry: DriveEntry) -> str:
    scenario = entry.metadata.get("scenario")
    if not scenario:
        raise LogError(f"drive {entry.drive}: its log records no scenario (needed by assign='scenario')")
    return scenario


def assign_drives(train: Sequence[DriveEntry], vehicles: int, assign: str) -> list[list[DriveEntry]]:
    """The training drives of each vehicle (see the module docstring); every vehicle must get at least one."""
    if assign == "hash":
        owner = {d.drive: vehicle_by_hash(d.drive, vehicles) for d in train}
    elif assign == "scenario":
        families = sorted({scenario_of(d) for d in train})
        if len(families) < vehicles:
            raise ConfigError(f"FederatedConfig.vehicles: assign='scenario' needs a scenario family per vehicle; "
                              f"the training drives hold {len(families)} ({families}), got {vehicles}")  # fmt: skip
        vehicle_of_family = {family: i % vehicles for i, family in enumerate(families)}
        owner = {d.drive: vehicle_of_family[scenario_of(d)] for d in train}
    else:
        raise ConfigError(f"FederatedConfig.assign: expected one of {ASSIGNMENTS}, got {assign!r}")
    fleet = [[d for d in train if owner[d.drive] == v] for v in range(vehicles)]
    empty = [v for v, drives in enumerate(fleet) if not drives]
    if empty:
        raise ConfigError(f"FederatedConfig.vehicles: vehicle(s) {empty} get no training drive ({len(train)} drives "
                          f"dealt by {assign} to {vehicles} vehicles); use fewer vehicles or more drives")  # fmt: skip
    return fleet


@dataclass(frozen=True)
class Vehicle:
    """A simulated vehicle: its drives and the windows cut from them (nothing else)."""

    number: int
    drives: tuple[str, ...]
    windows: TrajectoryWindows

    @property
    def samples(self) -> int:
        """Its FedAvg weight: the number of windows it holds."""
        return self.windows.batch_size


def make_fleet(split: LogSplit, cfg: FederatedConfig) -> list[Vehicle]:
    fleet = []
    for number, drives in enumerate(assign_drives(split.train, cfg.vehicles, cfg.assign)):
        try:
            windows = split.windows_of(drives)
        except LogError as exc:
            raise LogError(f"vehicle {number}: its drives hold no prediction window ({exc})") from exc
        fleet.append(Vehicle(number, tuple(d.drive for d in drives), windows))
    return fleet


# --- the server step ------------------------------------------------------------------------------


def average_weights(states: Sequence[Mapping[str, Tensor]], counts: Sequence[int]) -> dict[str, Tensor]:
    """FedAvg's server step: sum_v n_v w_v / sum_v n_v for every floating-point tensor, accumulated in float64
    and returned in its own dtype. Integer and boolean tensors (counters such as BatchNorm's num_batches_tracked;
    the predictor has none) have no meaningful average: they must agree across vehicles and are kept."""
    if not states or len(states) != len(counts):
        raise ValueError(
            f"average_weights: expected one count per state, got {len(states)} states, {len(counts)} counts"
        )
    if not all(_is_int(n) and n >= 1 for n in counts):
        raise ValueError(f"average_weights: counts must be ints >= 1, got {list(counts)}")
    names = set(states[0])
    for v, state in enumerate(states[1:], start=1):
        if set(state) != names:
            raise ValueError(f"average_weights: state {v} holds other tensors than state 0 "
                             f"({sorted(names ^ set(state))[:5]})")  # fmt: skip
    total = sum(counts)
    averaged = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            weighted = torch.zeros(first.shape, dtype=torch.float64, device=first.device)
            for state, n in zip(states, counts, strict=True):
                weighted += n * state[name].to(torch.float64)
            averaged[name] = (weighted / total).to(first.dtype)
            continue
        for v, state in enumerate(states[1:], start=1):
            if not torch.equal(state[name], first):
                raise ValueError(f"average_weights: {name} ({first.dtype}) differs between vehicles 0 and {v}; "
                                 "integer state cannot be averaged")  # fmt: skip
        averaged[name] = first.clone()
    return averaged


# --- federated rounds -----------------------------------------------------------------------------


def local_seed(seed: int, round_number: int, vehicle: int, vehicles: int) -> int:
    """The seed of a vehicle's local run (data order, augmentation): one per (round, vehicle). Round 1's vehicle 0
    gets `seed` itself, so one vehicle for one round is exactly the centralised run."""
    return seed + SEED_STRIDE * ((round_number - 1) * vehicles + vehicle)


def initial_weights(cfg: FederatedConfig) -> dict[str, Tensor]:
    """Round 1's global model: the seed's random weights, made as `prediction.train.train` makes them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = Predictor(cfg.predictor)
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def local_round(
    weights: Mapping[str, Tensor], vehicle: Vehicle, cfg: FederatedConfig, round_number: int, scratch: Path
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """One vehicle's round: `local_steps` steps of the training loop on its own windows, from `weights`.
    Returns its new weights and a report (its last batch's loss terms, seconds)."""
    out = scratch / f"vehicle-{vehicle.number:03d}"
    shutil.rmtree(out, ignore_errors=True)  # a killed round leaves checkpoints the loop would refuse to overwrite
    seed = local_seed(cfg.seed, round_number, vehicle.number, cfg.vehicles)
    start = time.perf_counter()
    final = train_predictor(cfg.local_config(out, seed), vehicle.windows, initial=weights)
    new_weights = load_checkpoint(final).subset(PREFIX)
    losses = load_checkpoint(latest_checkpoint(out)).meta.get("losses", {})
    shutil.rmtree(out)
    report = {"vehicle": vehicle.number, "seed": seed, "samples": vehicle.samples, "last_batch": losses,
              "seconds": time.perf_counter() - start}  # fmt: skip
    return new_weights, report


def predictor_from(weights: Mapping[str, Tensor], cfg: FederatedConfig) -> Predictor:
    model = Predictor(cfg.predictor)
    load_predictor_weights(model, dict(weights), "global model")
    return model.to(cfg.device).eval()


def validation_scores(model: Predictor, windows: TrajectoryWindows, cfg: FederatedConfig) -> dict[str, float]:
    """Mixture NLL (nll_joint, nll_step), minADE/minFDE and ADE/FDE on the validation windows (seeded samples,
    so two models are scored on the same noise)."""
    predictor = TrajectoryPredictor(model, cfg.position_std)
    return evaluate_scene(predictor, windows.to(cfg.device), num_samples=cfg.eval_samples, kde_samples=0, seed=0)


def resume_point(cfg: FederatedConfig, path: Path) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """(global weights, rounds done): from the last finished round's model file, or a fresh start."""
    if not path.exists():
        return initial_weights(cfg), []
    if not cfg.resume:
        raise ValueError(f"{cfg.out} already holds {path.name}; pass --resume or choose a new --out")
    model, meta = load_predictor(path)
    if meta.get("trained_by") != KIND:
        raise ValueError(f"--resume: {path} was written by {meta.get('trained_by')!r}, not {KIND!r}")
    now = jsonable(cfg)
    for name, value in meta.get("job", {}).items():
        if name == "predictor":  # fields added to PredictorConfig since take their defaults
            value = jsonable(PredictorConfig.from_dict(value))
        if name not in RESUMABLE_CHANGES and now.get(name) != value:
            raise ValueError(f"--resume: {name} is {now.get(name)!r} but {path.name} was trained with {value!r}")
    weights = {name: t.detach().clone() for name, t in model.state_dict().items()}
    return weights, list(meta["rounds"])


def save_global(weights: Mapping[str, Tensor], cfg: FederatedConfig, rounds: list[dict[str, Any]], path: Path) -> Path:
    """The global model after the last finished round, atomically, the rounds log in its metadata (so the file
    alone is enough to resume)."""
    model = predictor_from(weights, cfg)
    return save_predictor(model, path, trained_by=KIND, federated_round=len(rounds), rounds=rounds, job=jsonable(cfg))


def write_logs(cfg: FederatedConfig, split: LogSplit, fleet: list[Vehicle], rounds: list[dict[str, Any]]) -> None:
    """`drives.json` (the manifest `fleet train` writes, plus each vehicle's drives) and `rounds.json`."""
    out = Path(cfg.out)
    vehicles = [{"vehicle": v.number, "drives": list(v.drives), "samples": v.samples} for v in fleet]
    manifest = {
        "logs": str(split.index.root),
        "train": [{"drive": d.drive, "file": d.file, "size": d.size, "frames": d.frames} for d in split.train],
        "validation": [d.drive for d in split.validation],
        "broken": split.index.broken,
        "vehicles": [list(v.drives) for v in fleet],
    }
    write_json(out / MANIFEST, manifest)
    validation = {
        "drives": [d.drive for d in split.validation],
        "windows": split.windows_of(split.validation).batch_size,
    }
    write_json(out / ROUNDS_NAME, {"config": cfg, "vehicles": vehicles, "validation": validation, "rounds": rounds})


@dataclass(frozen=True)
class FederatedResult:
    model: Path  # the global model after the last finished round
    rounds: list[dict[str, Any]]  # one entry per finished round (see `rounds.json`)
    finished: bool  # every round is done (False when stopped by stop_after_round)


def federated_train(
    logs: str | Path,
    cfg: FederatedConfig,
    *,
    split: LogSplit | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> FederatedResult:
    """FedAvg rounds (see the module docstring), resuming from `cfg.out` when `cfg.resume`. `split` reuses the
    windows already read from `logs`; `on_round` is called with each finished round's entry."""
    split = split if split is not None else read_split(logs, cfg.val_fraction)
    if split.val_fraction != cfg.val_fraction:
        raise ValueError(f"split: read with val_fraction {split.val_fraction}, the config has {cfg.val_fraction}")
    fleet = make_fleet(split, cfg)
    validation = split.windows_of(split.validation)
    path = Path(cfg.out) / GLOBAL_NAME
    weights, rounds = resume_point(cfg, path)
    write_logs(cfg, split, fleet, rounds)
    for number in range(len(rounds) + 1, cfg.last_round + 1):
        start = time.perf_counter()
        local = [local_round(weights, vehicle, cfg, number, Path(cfg.out) / SCRATCH_DIR) for vehicle in fleet]
        weights = average_weights([w for w, _ in local], [vehicle.samples for vehicle in fleet])
        steps = number * cfg.steps_per_round
        entry = {
            "round": number,
            "optimizer_steps": steps,  # by the whole fleet so far
            "samples": steps * cfg.batch_size,
            "validation": validation_scores(predictor_from(weights, cfg), validation, cfg),
            "vehicles": [report for _, report in local],
            "seconds": time.perf_counter() - start,
        }
        rounds.append(entry)
        save_global(weights, cfg, rounds, path)  # the round is finished once this file is written
        write_logs(cfg, split, fleet, rounds)
        if on_round is not None:
            on_round(entry)
    shutil.rmtree(Path(cfg.out) / SCRATCH_DIR, ignore_errors=True)
    return FederatedResult(path, rounds, finished=len(rounds) == cfg.rounds)


# --- the centralised comparison -------------------------------------------------------------------


def centralised_train(
    logs: str | Path,
    cfg: FederatedConfig,
    *,
    split: LogSplit | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """The pooled baseline (see the module docstring) in `cfg.out/centralised`; returns, per round, its
    validation scores at the sample count the fleet reached at that round (also written to `centralised.json`)."""
    split = split if split is not None else read_split(logs, cfg.val_fraction)
    pooled = split.windows_of(split.train)
    validation = split.windows_of(split.validation)
    out = Path(cfg.out) / CENTRAL_DIR
    start = time.perf_counter()
    train_predictor(cfg.centralised_config(out), pooled)
    seconds = time.perf_counter() - start
    rows = []
    for number in range(1, cfg.last_round + 1):
        steps = number * cfg.steps_per_round
        model, _ = load_predictor(out / f"step-{steps:06d}.safetensors", cfg.device)
        row = {"round": number, "optimizer_steps": steps, "samples": steps * cfg.batch_size,
               "validation": validation_scores(model, validation, cfg)}  # fmt: skip
        rows.append(row)
        if on_round is not None:
            on_round(row)
    write_json(Path(cfg.out) / CENTRAL_NAME, {"config": cfg, "train_windows": pooled.batch_size,
                                              "train_seconds": seconds, "rounds": rows})  # fmt: skip
    return rows


def comparison(federated: list[dict[str, Any]], central: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Per round: the federated and (when run) centralised headline metrics at the same sample count."""
    by_round = {row["round"]: row for row in central or []}
    table = []
    for entry in federated:
        row = {"round": entry["round"], "samples": entry["samples"]}
        row.update({f"federated_{m}": entry["validation"][m] for m in HEADLINE})
        if entry["round"] in by_round:
            row.update({f"centralised_{m}": by_round[entry["round"]]["validation"][m] for m in HEADLINE})
        table.append(row)
    return table


def format_row(row: dict[str, Any]) -> str:
    """One line of the comparison table (`table_header`)."""
    central = [row.get(f"centralised_{m}") for m in HEADLINE]
    cells = [f"{row['round']:>5}", f"{row['samples']:>8}", *(f"{row[f'federated_{m}']:>10.3f}" for m in HEADLINE),
             *(f"{v:>10.3f}" if v is not None else f"{'-':>10}" for v in central)]  # fmt: skip
    return " ".join(cells)


def table_header() -> str:
    return (f"{'round':>5} {'samples':>8} {'fed NLL':>10} {'fed minADE':>10} {'cen NLL':>10} "
            f"{'cen minADE':>10}")  # fmt: skip


# --- command line ---------------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `federated` step of `drivestack fleet` (`sub`: its subcommands)."""
    d = FederatedConfig()
    p = sub.add_parser("federated", help="federated averaging of the predictor across simulated vehicles")
    p.add_argument("--logs", type=Path, required=True, help="log folder (`drivestack fleet record`)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--vehicles", type=int, default=d.vehicles, help=f"simulated vehicles (default {d.vehicles})")
    p.add_argument("--rounds", type=int, default=d.rounds, help=f"FedAvg rounds (default {d.rounds})")
    p.add_argument("--local-steps", type=int, default=d.local_steps,
                   help=f"optimiser steps per vehicle per round (default {d.local_steps})")  # fmt: skip
    p.add_argument(
        "--assign",
        choices=ASSIGNMENTS,
        default=d.assign,
        help="drives to vehicles: by a hash of the drive name (IID-ish) or by scenario family (non-IID)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"windows per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr:g})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the initial weights, data order, augmentation")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"drives held out, by a hash of their name (default {d.val_fraction:g})")  # fmt: skip
    p.add_argument("--predictor", choices=("default", "tiny"), default="default", help="network size")
    p.add_argument(
        "--centralised",
        action="store_true",
        help="also train the pooled baseline on the same drives, as many samples, and compare",
    )
    p.add_argument("--resume", action="store_true", help="continue from the last finished round in --out")
    p.add_argument("--stop-after-round", type=int, default=None, help="stop after this round (resume later)")
    p.add_argument("--device", default=d.device, help="torch device (default cpu)")
    p.set_defaults(run=run_federated)


def config_from_args(args: argparse.Namespace) -> FederatedConfig:
    predictor = PredictorConfig.tiny() if args.predictor == "tiny" else PredictorConfig()
    return FederatedConfig(
        out=args.out, vehicles=args.vehicles, rounds=args.rounds, local_steps=args.local_steps, assign=args.assign,
        val_fraction=args.val_fraction, predictor=predictor, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        resume=args.resume, stop_after_round=args.stop_after_round, device=args.device,
    )  # fmt: skip


def run_federated(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    split = read_split(args.logs, cfg.val_fraction)
    print(f"{len(split.train)} training drives on {cfg.vehicles} vehicles (by {cfg.assign}), "
          f"{len(split.validation)} validation drives")  # fmt: skip
    print(f"{'round':>5} {'samples':>8} {'val NLL':>10} {'val minADE':>10} {'seconds':>8}")

    def print_round(entry: dict[str, Any]) -> None:
        scores = entry["validation"]
        print(f"{entry['round']:>5} {entry['samples']:>8} {scores['nll_joint']:>10.3f} {scores['min_ade']:>10.3f} "
              f"{entry['seconds']:>8.1f}", flush=True)  # fmt: skip

    result = federated_train(args.logs, cfg, split=split, on_round=print_round)
    if not result.finished:
        print(f"stopped after round {len(result.rounds)} of {cfg.rounds}; --resume continues")
    central = centralised_train(args.logs, cfg, split=split) if args.centralised else None
    table = comparison(result.rounds, central)
    if central is not None:
        print(f"\nvalidation, federated vs centralised at the same sample count:\n{table_header()}")
        for row in table:
            print(format_row(row))
    write_json(Path(cfg.out) / SUMMARY_NAME, {"config": cfg, "model": result.model, "finished": result.finished,
                                              "table": table})  # fmt: skip
    print(f"wrote {result.model} and {Path(cfg.out) / ROUNDS_NAME}")
    return 0
