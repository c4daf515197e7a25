"""An artifact's manifest is checked when it is opened (issue 16): a graph `file` of "../../../etc/passwd" with a
matching SHA-256 was handed to onnxruntime, and a graph entry without `spec` crashed `deploy parity` and
`deploy check-trt` with `KeyError: 'spec'`."""

from __future__ import annotations

import json
import shutil

import pytest

from core.io import sha256_file
from deploy.artifact import MANIFEST, Artifact
from deploy.base import ArtifactError
from stack.cli import main


@pytest.fixture
def editable(artifact, tmp_path):
    """A copy of the session's artifact whose manifest a test may rewrite."""
    root = tmp_path / "export"
    shutil.copytree(artifact.root, root)
    return root


def _edit(root, change):
    manifest = json.loads((root / MANIFEST).read_text())
    change(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest))


def test_a_file_outside_the_artifact_folder_is_refused_even_with_its_digest(editable, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not a graph\n")
    for file in ("../secret.txt", str(outside)):
        _edit(editable, lambda m, f=file: m["graphs"]["detector"].update(file=f, sha256=sha256_file(outside)))
        with pytest.raises(ArtifactError, match=r"graphs\.detector\.file: expected a file name inside the artifact"):
            Artifact.open(editable)


def test_a_link_out_of_the_artifact_folder_is_refused(editable, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(editable / "detector.onnx", outside)
    (editable / "detector.onnx").unlink()
    (editable / "detector.onnx").symlink_to(outside)
    with pytest.raises(ArtifactError, match=r"graphs\.detector\.file: detector\.onnx is a link out of the artifact"):
        Artifact.open(editable)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["graphs"]["planner"].pop("spec"), r"graphs\.planner has no 'spec' object"),
        (lambda m: m["graphs"]["planner"]["spec"].pop("inputs"), r"graphs\.planner\.spec is malformed"),
        (lambda m: m["graphs"]["planner"]["spec"].update(name="detector"), r"graphs\.planner\.spec names graph"),
        (lambda m: m["graphs"]["planner"].pop("sha256"), r"graphs\.planner\.sha256: expected 64 lowercase hex"),
        (lambda m: m["checkpoint"].pop("file"), r"checkpoint\.file: expected a file name"),
        (lambda m: m.update(graphs=[]), r"'graphs' must be an object"),
        (lambda m: m.update(config=None), r"'config' must be an object"),
    ],
)
def test_a_malformed_entry_is_an_error_at_open_naming_it(editable, change, message):
    _edit(editable, change)
    with pytest.raises(ArtifactError, match=message):
        Artifact.open(editable)


@pytest.mark.parametrize("command", [["deploy", "parity", "--graphs", "planner", "--batches", "1"],
                                     ["deploy", "check-trt"]])  # fmt: skip
def test_deploy_commands_report_a_missing_spec_in_one_line(editable, command, capsys):
    _edit(editable, lambda m: m["graphs"]["planner"].pop("spec"))
    assert main([*command[:2], "--artifact", str(editable), *command[2:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "graphs.planner has no 'spec' object" in err
