"""Ordinary mistakes end in one line and exit code 2, never a traceback (issue 16): `--out` naming an existing file
(a `FileExistsError` in sim, fleet record, fleet train and export), a read-only or full disk, a binary scenario
file (`'utf-8' codec can't decode` without the file's name), a suite that includes itself (reported as
`family: expected one of [...]`). `--debug` or DRIVESTACK_DEBUG=1 keeps the traceback for developers."""

from __future__ import annotations

import errno

import pytest
import yaml

from sim.scenarios import scenario_path
from stack.cli import DEBUG_VARIABLE, main


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "results"
    path.write_text("not a folder\n")
    return path


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"drivestack {command}: error: ")
    return err


@pytest.mark.parametrize(
    "command",
    [
        ["sim", "--suite", "cruising", "--policy", "idm", "--seeds", "1", "--out"],
        ["fleet", "record", "--suite", "cruising", "--seeds", "1", "--out"],
        ["fleet", "train", "--stage", "prediction", "--logs", "{tmp}", "--out"],
        ["export", "--out"],
    ],
)
def test_an_output_path_that_is_a_file_is_one_line_naming_it(command, a_file, tmp_path, capsys):
    argv = [part.replace("{tmp}", str(tmp_path)) for part in command]
    assert main([*argv, str(a_file)]) == 2
    err = _one_line_error(capsys, command[0])
    assert str(a_file) in err


@pytest.mark.parametrize(
    ("code", "reason"), [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")]
)
def test_a_full_or_read_only_disk_is_one_line(code, reason, tmp_path, monkeypatch, capsys):
    def refuse(path, data):
        raise OSError(code, reason, str(path))

    monkeypatch.setattr("sim.journal.atomic_write_bytes", refuse)
    out = tmp_path / "out"
    assert main(["sim", "--suite", "cruising", "--policy", "idm", "--seeds", "1", "--out", str(out)]) == 2
    assert f"{out / 'episodes.jsonl'}: {reason}" in _one_line_error(capsys, "sim")


def test_debug_shows_the_traceback(a_file, monkeypatch):
    command = ["export", "--out", str(a_file)]
    with pytest.raises(FileExistsError):
        main(["--debug", *command])
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(FileExistsError):
        main(command)


def test_a_binary_scenario_file_is_named(tmp_path, capsys):
    path = tmp_path / "scenario.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert main(["sim", "--suite", str(path), "--policy", "idm", "--seeds", "1", "--out", str(tmp_path)]) == 2
    assert f"{path}: not a UTF-8 text suite or scenario file" in _one_line_error(capsys, "sim")


def test_a_huge_scenario_file_is_not_read_whole(tmp_path, capsys):
    path = tmp_path / "scenario.yaml"
    with open(path, "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB of nothing
    assert main(["sim", "--suite", str(path), "--policy", "idm", "--seeds", "1", "--out", str(tmp_path)]) == 2
    assert "larger than 1024 KiB" in _one_line_error(capsys, "sim")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("suite.yaml", "scenarios[1]: names the suite file itself; a suite lists scenario files"),
        ("other_suite.yaml", "scenarios[1]: {tmp}/other_suite.yaml is a suite; suites do not nest"),
    ],
)
def test_a_suite_that_includes_a_suite_is_refused_naming_it(entry, message, tmp_path, capsys):
    suite = {"name": "loop", "description": "includes itself", "scenarios": ["cruising", entry]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    (tmp_path / "other_suite.yaml").write_text(yaml.safe_dump({**suite, "scenarios": ["cruising"]}))
    argv = ["sim", "--suite", str(tmp_path / "suite.yaml"), "--policy", "idm", "--seeds", "1", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert message.format(tmp=tmp_path) in _one_line_error(capsys, "sim")


def test_a_suite_naming_two_scenarios_alike_is_refused(tmp_path, capsys):
    for copy in ("a", "b"):  # a copied scenario file that kept its name
        (tmp_path / f"{copy}.yaml").write_text(scenario_path("lead_brake").read_text())
    suite = {"name": "twins", "description": "two files, one name", "scenarios": ["a.yaml", "b.yaml"]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    argv = ["sim", "--suite", str(tmp_path / "suite.yaml"), "--policy", "idm", "--seeds", "1", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "scenarios[1]: scenario name 'lead_brake' is also scenarios[0]'s" in _one_line_error(capsys, "sim")


def test_ctrl_c_outside_a_suite_run_still_says_interrupted(monkeypatch, capsys):
    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("deploy.export.export_stack", pressed)
    assert main(["export", "--out", "/nonexistent/never-written"]) == 130
    assert capsys.readouterr().err.strip() == "drivestack export: interrupted"
