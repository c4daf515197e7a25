"""The study in its storage: opened, created or joined (refused when created with other settings), and the
out folder claimed for it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.engine import make_url

from fleet.sweep.settings import OBJECTIVE, REDUCTION_FACTOR, SweepSettings
from fleet.sweep.space import Dimension
from sim.config import ConfigError

SQLITE_TIMEOUT_S = 60  # how long a worker waits for another's write lock on the SQLite file
SETTINGS_ATTR = "sweep_settings"  # the study's user attr holding the settings its trials share
CLAIM_FILE = "sweep.json"  # names the study whose trials live in an out folder


def shown_url(url: str) -> str:
    """The storage URL without its password (it goes to the terminal and to best.json)."""
    return make_url(url).render_as_string(hide_password=True)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The study's storage. SQLite: workers wait up to `SQLITE_TIMEOUT_S` for another's write lock instead of
    failing at once with "database is locked"."""
    if make_url(url).get_backend_name() == "sqlite":
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})
    return optuna.storages.RDBStorage(url)


def default_pruner(settings: SweepSettings) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(
        min_resource=settings.min_steps, max_resource=settings.steps, reduction_factor=REDUCTION_FACTOR
    )


def study_identity(settings: SweepSettings, space: dict[str, Dimension]) -> dict[str, Any]:
    """What makes two invocations' trials comparable, as JSON (the study stores it on creation)."""
    identity = {
        "stage": settings.stage,
        "objective": OBJECTIVE,
        "steps": settings.steps,
        "min_steps": settings.min_steps,
        "predictor": settings.predictor,
        "val_fraction": settings.val_fraction,
        "space": {name: asdict(dim) for name, dim in space.items()},
    }
    return json.loads(json.dumps(identity))  # tuples as lists, as the storage returns them


def check_out_folder(out: Path, study_name: str) -> None:
    """One study per out folder: trial folders are named by trial number, which restarts in every study (the
    folder is claimed, in `CLAIM_FILE`, when the sweep starts)."""
    claim = out / CLAIM_FILE
    owner = json.loads(claim.read_text()).get("study") if claim.is_file() else study_name
    if owner != study_name:
        raise ConfigError(f"SweepSettings.study_name (--study-name): {out} holds the trials of study {owner!r}, "
                          f"got {study_name!r}; choose another --out")  # fmt: skip


OPTION_OF = {"space": "the search space", "objective": "the objective"}


def create_or_join(settings: SweepSettings, space: dict[str, Dimension]) -> optuna.Study:
    """The study, created on first use; a study created with other settings is refused, naming the first
    that differs (its trials would not be comparable with ours)."""
    study = optuna.create_study(
        storage=open_storage(settings.storage_url()),
        study_name=settings.study_name,
        direction="minimize",
        load_if_exists=True,
    )
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise ConfigError(f"SweepSettings.study_name (--study-name): study {settings.study_name!r} maximises; "
                          f"the sweep minimises {OBJECTIVE}")  # fmt: skip
    ours, recorded = study_identity(settings, space), study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:
        study.set_user_attr(SETTINGS_ATTR, ours)
        return study
    for name, value in ours.items():
        if recorded.get(name) != value:
            option = OPTION_OF.get(name, f"--{name.replace('_', '-')}")
            raise ConfigError(f"SweepSettings.{name} ({option}): study {settings.study_name!r} was created with "
                              f"{recorded.get(name)!r}, got {value!r}; use another --study-name")  # fmt: skip
    return study
