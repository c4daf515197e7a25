"""An exported artifact: a folder with the ONNX graphs, the checkpoint they came from, and a manifest.

    runs/export/
      manifest.json         format, versions, the StackConfig, and per graph: file, sha256, spec
      stack.safetensors     the checkpoint (the torch backend runs it; parity compares against it)
      detector.onnx, tracker.onnx, predictor.onnx, planner.onnx, planner_sampled.onnx,
      perception_step.onnx, stack_step.onnx, stack_step_sampled.onnx

Opening verifies what it reads: a missing or malformed manifest, a graph or
checkpoint whose SHA-256 differs from the manifest's (a corrupted or swapped
file), or an unknown graph name is an `ArtifactError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.runtime import ArtifactError
from deploy.spec import GraphSpec

MANIFEST = "manifest.json"
CHECKPOINT = "stack.safetensors"
FORMAT = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
