"""The study in its storage: opened, created or joined (refused when created with other settings or on other
drives), and the out folder claimed for it."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.engine import make_url

from core.config import ConfigError
from fleet.sweep.settings import OBJECTIVE, REDUCTION_FACTOR, SweepSettings
from fleet.sweep.space import Dimension

SQLITE_TIMEOUT_S = 60  # how long a worker waits for another's write lock on the SQLite file
JOIN_WAIT_S = 10  # how long a joiner waits for the settings the study's creator records just after creating it
SETTINGS_ATTR = "sweep_settings"  # the study's user attr holding the settings its trials share
UUID_ATTR = "sweep_uuid"  # the study's user attr telling it from a later study of the same name
CLAIM_FILE = "sweep.json"  # names the study (name, storage, uuid) whose trials live in an out folder


def shown_url(url: str) -> str:
    """The storage URL without its password (it goes to the terminal, best.json and sweep.json)."""
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


def drives_digest(train: list[str], validation: list[str]) -> str:
    """A short hash of the split's drive names: another --logs, a drive more or less, changes it."""
    names = json.dumps({"train": sorted(train), "validation": sorted(validation)})
    return hashlib.sha256(names.encode()).hexdigest()[:16]


def study_identity(
    settings: SweepSettings, space: dict[str, Dimension], drives: tuple[list[str], list[str]]
) -> dict[str, Any]:
    """What makes two invocations' trials comparable, as JSON (the study stores it on creation). `drives`:
    the names of the training and validation drives (`check_split`)."""
    identity = {
        "stage": settings.stage,
        "objective": OBJECTIVE,
        "steps": settings.steps,
        "min_steps": settings.min_steps,
        "predictor": settings.predictor,
        "seed": settings.seed,  # every trial's training seed
        "val_fraction": settings.val_fraction,
        "drives": drives_digest(*drives),
        "space": {name: asdict(dim) for name, dim in space.items()},
    }
    return json.loads(json.dumps(identity))  # tuples as lists, as the storage returns them


def check_out_folder(out: Path, study_name: str, storage: optuna.storages.BaseStorage) -> None:
    """One study per out folder: trial folders are named by trial number, which restarts at 0 in every study,
    and a trial refuses a folder that already holds checkpoints. The folder's claim (`CLAIM_FILE`, written when
    a sweep starts) must name this study and its uuid; with no uuid in the claim (or no claim), a study without
    trials is refused where trial folders exist."""
    claim = json.loads((out / CLAIM_FILE).read_text()) if (out / CLAIM_FILE).is_file() else {}
    if claim.get("study", study_name) != study_name:
        raise ConfigError(f"SweepSettings.study_name (--study-name): {out} holds the trials of study "
                          f"{claim['study']!r}, got {study_name!r}; choose another --out")  # fmt: skip
    try:
        study_id = storage.get_study_id_from_name(study_name)
        ours, trials = storage.get_study_user_attrs(study_id).get(UUID_ATTR), storage.get_n_trials(study_id)
    except KeyError:  # no such study yet
        ours, trials = None, 0
    if claim.get("uuid") not in (None, ours) or (trials == 0 and any(out.glob("trial-*"))):
        other = f" (uuid {claim['uuid']} in {claim.get('storage')}, per {CLAIM_FILE})" if "uuid" in claim else ""
        raise ConfigError(f"SweepSettings.out (--out): {out} holds the trial folders of another study{other}, "
                          f"not of study {study_name!r} in this storage, whose trials would be numbered from 0 "
                          f"again into them; choose another --out")  # fmt: skip


def folder_claim(study: optuna.Study, storage: str) -> dict[str, Any]:
    """The out folder's `CLAIM_FILE`."""
    return {"study": study.study_name, "storage": shown_url(storage), "uuid": study.user_attrs[UUID_ATTR]}


def recorded_settings(study: optuna.Study) -> dict[str, Any] | None:
    """The settings the study was created with. Its creator records them just after creating it, so a joiner
    that raced it waits up to `JOIN_WAIT_S` for them; None for a study made outside the sweep."""
    deadline = time.monotonic() + JOIN_WAIT_S
    while (recorded := study.user_attrs.get(SETTINGS_ATTR)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return recorded


OPTION_OF = {
    "space": ("space", "the search space"),
    "objective": ("objective", "the objective"),
    "drives": ("logs", "--logs: the names of its training and validation drives"),
}


def create_or_join(
    settings: SweepSettings, space: dict[str, Dimension], drives: tuple[list[str], list[str]]
) -> tuple[optuna.Study, bool]:
    """The study, and whether this call created it (and recorded its settings and a uuid); a study created
    with other settings is refused, naming the first that differs (its trials would not be comparable)."""
    storage, ours = open_storage(settings.storage_url()), study_identity(settings, space, drives)
    try:  # the storage refuses a second study of the name: of invocations started together, one creates it
        study = optuna.create_study(storage=storage, study_name=settings.study_name, direction="minimize")
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=settings.study_name, storage=storage)
    else:
        study.set_user_attr(UUID_ATTR, uuid.uuid4().hex)  # first: a joiner waits for the settings
        study.set_user_attr(SETTINGS_ATTR, ours)
        return study, True
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise ConfigError(f"SweepSettings.study_name (--study-name): study {settings.study_name!r} maximises; "
                          f"the sweep minimises {OBJECTIVE}")  # fmt: skip
    recorded = recorded_settings(study)
    if recorded is None:  # made outside the sweep: ours from now on
        study.set_user_attr(UUID_ATTR, uuid.uuid4().hex)
        study.set_user_attr(SETTINGS_ATTR, ours)
        return study, False
    for name, value in ours.items():
        if recorded.get(name) != value:
            field, option = OPTION_OF.get(name, (name, f"--{name.replace('_', '-')}"))
            raise ConfigError(f"SweepSettings.{field} ({option}): study {settings.study_name!r} was created with "
                              f"{recorded.get(name)!r}, got {value!r}; use another --study-name")  # fmt: skip
    return study, False
