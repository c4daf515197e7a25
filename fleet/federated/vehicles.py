"""The simulated vehicles: the training drives dealt to V vehicles, each with the windows of its own drives.

The drives are dealt to the vehicles by `FederatedConfig.assign`:

    hash       by a salted hash of the drive name (`in_validation` with a salt of its own, so independent of the
               validation split): IID-ish, deterministic, and a new drive never moves an old one;
    scenario   by scenario family: the families, sorted, go round-robin to the vehicles, so each vehicle sees
               some families only (non-IID, where FedAvg usually loses to centralised training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.config import ConfigError
from fleet.federated.config import ASSIGNMENTS, VEHICLE_SALT, FederatedConfig
from fleet.federated.data import LogSplit
from prediction.windows import TrajectoryWindows
from sim.drivelogs.format import LogError
from sim.drivelogs.index import DriveEntry, in_validation


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
    def num_windows(self) -> int:
        """Its FedAvg weight: the number of windows it holds (`windows` in `rounds.json`)."""
        return self.windows.batch_size


def make_fleet(split: LogSplit, cfg: FederatedConfig) -> list[Vehicle]:
    """The vehicles of `cfg` on the training drives of `split`, in vehicle order."""
    fleet = []
    for number, drives in enumerate(assign_drives(split.train, cfg.vehicles, cfg.assign)):
        try:
            windows = split.windows_of(drives)
        except LogError as exc:
            raise LogError(f"vehicle {number}: its drives hold no prediction window ({exc})") from exc
        fleet.append(Vehicle(number, tuple(d.drive for d in drives), windows))
    return fleet
