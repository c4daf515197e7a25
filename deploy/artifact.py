"""An exported artifact: a folder with the ONNX graphs, the checkpoint they came from, and a manifest.

    runs/export/
      manifest.json         format, versions, the StackConfig, and per graph: file, sha256, spec
      stack.safetensors     the checkpoint (the torch backend runs it; parity compares against it)
      detector.onnx, tracker.onnx, predictor.onnx, planner.onnx, planner_sampled.onnx,
      perception_step.onnx, stack_step.onnx, stack_step_sampled.onnx

Opening verifies what it reads: a missing or malformed manifest (an entry
without its file, digest or spec; a file that is not a plain name inside the
folder, such as "../../etc/passwd" or a link out of it), a graph or checkpoint
whose SHA-256 differs from the manifest's (a corrupted or swapped file), or an
unknown graph name is an `ArtifactError` naming the file and the entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.io import sha256_file
from deploy.base import ArtifactError
from deploy.spec import GraphSpec

MANIFEST = "manifest.json"
CHECKPOINT = "stack.safetensors"
FORMAT = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Artifact:
    """An opened export folder; see the module docstring."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> Artifact:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise ArtifactError(f"artifact {root}: no {MANIFEST} (export one with `drivestack export`)")
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"artifact {root}: {MANIFEST} is not valid JSON ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "graphs" not in manifest:
            raise ArtifactError(f"artifact {root}: {MANIFEST} is not a format-{FORMAT} drivestack manifest")
        _check_manifest(root, manifest)
        return cls(root, manifest)

    @property
    def graph_names(self) -> list[str]:
        return list(self.manifest["graphs"])

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    def _entry(self, name: str) -> dict[str, Any]:
        if name not in self.manifest["graphs"]:
            raise ArtifactError(f"artifact {self.root}: no graph {name!r} (graphs: {', '.join(self.graph_names)})")
        return self.manifest["graphs"][name]

    def spec(self, name: str) -> GraphSpec:
        return GraphSpec.from_dict(self._entry(name)["spec"])

    def graph_sha256(self, name: str) -> str:
        return str(self._entry(name)["sha256"])

    def graph_path(self, name: str) -> Path:
        """The verified path of graph `name`'s ONNX file."""
        entry = self._entry(name)
        return self._verified(self.root / entry["file"], entry["sha256"])

    def checkpoint_path(self) -> Path:
        """The verified path of the checkpoint the graphs were exported from."""
        if "checkpoint" not in self.manifest:
            raise ArtifactError(f"artifact {self.root}: {MANIFEST} has no checkpoint entry (export it with one)")
        entry = self.manifest["checkpoint"]
        return self._verified(self.root / entry["file"], entry["sha256"])

    def _verified(self, path: Path, expected: str) -> Path:
        if not path.is_file():
            raise ArtifactError(f"artifact {self.root}: {path.name} is missing")
        if sha256_file(path) != expected:
            raise ArtifactError(
                f"artifact {self.root}: {path.name} is corrupted or was replaced (SHA-256 differs from {MANIFEST})"
            )
        return path


def _check_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Every entry the runtimes read, checked once at open so that none fails later with a KeyError."""
    where = f"artifact {root}: {MANIFEST}"
    if not isinstance(manifest.get("config"), dict):
        raise ArtifactError(f"{where}: 'config' must be an object (the StackConfig)")
    if "checkpoint" in manifest:  # optional: only the torch backend and parity read it
        _check_file_entry(root, "checkpoint", manifest["checkpoint"])
    if not isinstance(manifest["graphs"], dict):
        raise ArtifactError(f"{where}: 'graphs' must be an object of graph name to entry")
    for name, entry in manifest["graphs"].items():
        _check_file_entry(root, f"graphs.{name}", entry)
        if not isinstance(entry.get("spec"), dict):
            raise ArtifactError(f"{where}: graphs.{name} has no 'spec' object (inputs and outputs)")
        try:
            spec = GraphSpec.from_dict(entry["spec"])
        except ValueError as exc:
            raise ArtifactError(f"{where}: graphs.{name}.spec is malformed ({exc})") from exc
        if spec.name != name:
            raise ArtifactError(f"{where}: graphs.{name}.spec names graph {spec.name!r}")


def _check_file_entry(root: Path, key: str, entry: Any) -> None:
    where = f"artifact {root}: {MANIFEST}: {key}"
    if not isinstance(entry, dict):
        raise ArtifactError(f"{where}: expected an object with 'file' and 'sha256'")
    file, digest = entry.get("file"), entry.get("sha256")
    if not isinstance(file, str) or not file or Path(file).name != file or file in (".", ".."):
        raise ArtifactError(f"{where}.file: expected a file name inside the artifact folder, got {file!r:.80}")
    if not (root / file).resolve().is_relative_to(root.resolve()):
        raise ArtifactError(f"{where}.file: {file} is a link out of the artifact folder")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise ArtifactError(f"{where}.sha256: expected 64 lowercase hex digits")
