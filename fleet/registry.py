"""Model versions and the closed-loop regression gate: `drivestack fleet promote`.

    registry/
      registry.json      the versions, and which one is current
      v0001/stack.safetensors, v0001/eval/ (closed-loop results), v0001/export/ (ONNX, when promoted)

Every candidate gets a version with its checkpoint, config, the manifest of
the logs it was trained on (when given) and its closed-loop metrics, promoted
or not. `promote` runs the candidate and the current model on the same suite
and seeds; the candidate becomes current only if its mean score is at least
the current model's (and, with `max_collision_increase_pct`, its at-fault
collision rate is not worse by more than that), and is then exported (`deploy.export`), so what ships is
what passed the gate. registry.json is rewritten atomically after each change.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.checkpoint import load_checkpoint
from core.io import atomic_copy, atomic_write_text, sha256_file
from deploy.export import export_stack
from sim.suite import SuiteConfig, run_suite
from stack.config import StackConfig
from stack.policy import StackPolicy

REGISTRY_FILE = "registry.json"
CHECKPOINT = "stack.safetensors"
FORMAT = 1


@dataclass
class ModelVersion:
    version: int
    checkpoint: str
    sha256: str
    created: str
    config: dict[str, Any]
    status: str = "candidate"  # candidate, promoted, rejected
    metrics: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, Any] | None = None
    compared_with: int | None = None
    export: str | None = None


COLLISIONS = "at_fault_collision_rate_pct"


@dataclass(frozen=True)
class GateSettings:
    """The closed-loop check every candidate faces (the same episodes for candidate and current).

    Attributes:
        max_collision_increase_pct: when set, a candidate is also refused if its at-fault collision rate
            exceeds the current model's by more than this many percentage points (a better mean score
            can hide more collisions bought with more progress). None: the score alone decides.
    """

    suite: str = "demo"
    seeds: int = 2
    first_seed: int = 5000
    plan_every: int = 2
    batch_size: int = 8
    export: bool = True
    max_collision_increase_pct: float | None = None


def passes_gate(candidate: dict[str, Any], current: dict[str, Any], gate: GateSettings) -> bool:
    """At least the current model's mean score, and (when guarded) no more at-fault collisions than allowed."""
    if candidate["score_mean"] < current["score_mean"]:
        return False
    limit = gate.max_collision_increase_pct
    return limit is None or candidate[COLLISIONS] <= current[COLLISIONS] + limit


class Registry:
    """The versions in `root` (created on first use)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.current: int | None = None
        self.versions: list[ModelVersion] = []
        path = self.root / REGISTRY_FILE
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                self.current = data["current"]
                self.versions = [ModelVersion(**v) for v in data["versions"]]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"model registry {path}: unreadable ({exc})") from exc

    def save(self) -> None:
        data = {"format": FORMAT, "current": self.current, "versions": [asdict(v) for v in self.versions]}
        atomic_write_text(self.root / REGISTRY_FILE, json.dumps(data, indent=1) + "\n")

    def folder(self, version: int) -> Path:
        return self.root / f"v{version:04d}"

    def get(self, version: int) -> ModelVersion:
        for v in self.versions:
            if v.version == version:
                return v
        raise ValueError(f"model registry {self.root}: no version {version}")

    def add(self, checkpoint: str | Path, logs: dict[str, Any] | None = None) -> ModelVersion:
        """Copy `checkpoint` in as a new candidate version (its config read from the file)."""
        config = load_checkpoint(checkpoint).config
        number = max((v.version for v in self.versions), default=0) + 1
        target = atomic_copy(checkpoint, self.folder(number) / CHECKPOINT)
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        version = ModelVersion(number, str(target.relative_to(self.root)), sha256_file(target), created, config,
                               logs=logs)  # fmt: skip
        self.versions.append(version)
        self.save()
        return version


def closed_loop(registry: Registry, version: ModelVersion, gate: GateSettings) -> dict[str, Any]:
    """The version's overall closed-loop metrics on the gate's suite (results in vNNNN/eval)."""
    path = registry.root / version.checkpoint
    raster = StackConfig.from_dict(version.config).perception.detector.raster
    out = registry.folder(version.version) / "eval"
    cfg = SuiteConfig(suite=gate.suite, policy="stack", seeds=gate.seeds, first_seed=gate.first_seed, out=out,
                      batch_size=gate.batch_size, raster=raster)  # fmt: skip
    run_suite(cfg, StackPolicy.from_checkpoint(path, plan_every=gate.plan_every))
    return json.loads((out / "summary.json").read_text())["overall"]


def promote(registry: Registry, checkpoint: str | Path, gate: GateSettings, logs: dict | None = None) -> ModelVersion:
    """Add `checkpoint` as a version, run the gate, and make it current if it drives at least as well."""
    candidate = registry.add(checkpoint, logs)
    candidate.metrics = closed_loop(registry, candidate, gate)
    current = registry.get(registry.current) if registry.current is not None else None
    if current is not None:
        current_metrics = closed_loop(registry, current, gate)  # the same episodes, measured again today
        candidate.compared_with = current.version
        passed = passes_gate(candidate.metrics, current_metrics, gate)
        candidate.metrics["current_score_mean"] = current_metrics["score_mean"]
        candidate.metrics[f"current_{COLLISIONS}"] = current_metrics.get(COLLISIONS)
    else:
        passed = True
    candidate.status = "promoted" if passed else "rejected"
    if passed:
        registry.current = candidate.version
        if gate.export:
            export_stack(registry.root / candidate.checkpoint, registry.folder(candidate.version) / "export")
            candidate.export = str((registry.folder(candidate.version) / "export").relative_to(registry.root))
    registry.save()
    return candidate
