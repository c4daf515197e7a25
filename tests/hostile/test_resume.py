"""An interrupted evaluation keeps its work (issue 16): `drivestack sim` wrote results only at the end, so Ctrl-C
after 59 minutes of a 60-minute run left an empty folder and a raw `KeyboardInterrupt` traceback. Batches are now
journaled as they finish, and `--resume` finishes the run byte-identically to one that was never interrupted."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from core.config import ConfigError
from sim.journal import JOURNAL, RunInterrupted, exclusive, start
from sim.policies.idm import IDMPolicy
from sim.runner import EpisodeResult
from sim.scenarios import episode_steps, load_scenario, scenario_path
from sim.suite import SuiteConfig, run_suite
from stack.cli import main

OUTPUTS = ("episodes.csv", "summary.json", "summary.csv", JOURNAL)


class InterruptedAtCall(IDMPolicy):
    """The IDM policy, with Ctrl-C pressed at its `at`-th `act` call (counted across batches)."""

    def __init__(self, at: int):
        super().__init__()
        self.calls, self.at = 0, at

    def act(self, state, obs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return super().act(state, obs)


@pytest.fixture
def suite_file(tmp_path):
    """Two short scenarios, so three seeds in batches of two make four batches."""
    names = []
    for name in ("cruising", "lead_brake"):
        doc = load_scenario(scenario_path(name)).with_overrides({"duration": 1.0}).document
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
        names.append(f"{name}.yaml")
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "two", "description": "resume test", "scenarios": names}))
    return path


def _config(suite_file, out):
    return SuiteConfig(suite=str(suite_file), policy="idm", seeds=3, batch_size=2, out=out)


def _outputs(folder):
    return {name: (folder / name).read_bytes() for name in OUTPUTS}


@pytest.fixture
def straight_through(suite_file, tmp_path):
    cfg = _config(suite_file, tmp_path / "straight")
    run_suite(cfg, IDMPolicy())
    return _outputs(cfg.out)


def _steps_per_batch(cfg):
    """The policy's `act` calls in one batch: one per policy period of a 1 s episode."""
    steps = episode_steps(load_scenario(scenario_path("cruising")).with_overrides({"duration": 1.0}), cfg.timing)
    return -(-steps // cfg.timing.policy_period_steps)


def test_an_interrupted_run_resumes_to_the_same_bytes(suite_file, tmp_path, straight_through):
    cfg = _config(suite_file, tmp_path / "interrupted")
    per_batch = _steps_per_batch(cfg)
    with pytest.raises(RunInterrupted, match=r"interrupted: 3 of 6 episodes are kept in .*episodes.jsonl; .*--resume"):
        run_suite(cfg, InterruptedAtCall(at=2 * per_batch + 3))  # in the third batch
    assert not (cfg.out / "summary.json").exists()
    counting = InterruptedAtCall(at=-1)
    run_suite(cfg, counting, resume=True)
    assert counting.calls == 2 * per_batch  # only the two unfinished batches ran again
    assert _outputs(cfg.out) == straight_through


def test_a_torn_last_line_is_dropped_and_its_batch_run_again(suite_file, tmp_path, straight_through):
    cfg = _config(suite_file, tmp_path / "torn")
    with pytest.raises(RunInterrupted):
        run_suite(cfg, InterruptedAtCall(at=3 * _steps_per_batch(cfg) + 1))
    with open(cfg.out / JOURNAL, "a") as journal:
        journal.write('{"scenario": "lead_brake", "seeds": [0, 1], "episo')  # killed part-way through a write
    run_suite(cfg, IDMPolicy(), resume=True)
    assert _outputs(cfg.out) == straight_through


def test_an_interrupted_run_is_never_overwritten_or_resumed_with_other_settings(suite_file, tmp_path):
    cfg = _config(suite_file, tmp_path / "kept")
    with pytest.raises(RunInterrupted):
        run_suite(cfg, InterruptedAtCall(at=_steps_per_batch(cfg) + 1))
    with pytest.raises(ConfigError, match=r"holds an interrupted run \(2 of 6 episodes .*pass --resume"):
        run_suite(cfg, IDMPolicy())
    with pytest.raises(ConfigError, match=r"cannot resume a different run \(seeds: 3 -> 4\)"):
        run_suite(dataclasses.replace(cfg, seeds=4), IDMPolicy(), resume=True)


def test_ctrl_c_in_the_command_is_one_line_saying_how_to_resume(suite_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli"
    monkeypatch.setattr("sim.cli.make_policy", lambda name, **options: InterruptedAtCall(at=3))
    command = ["sim", "--suite", str(suite_file), "--policy", "idm", "--seeds", "3", "--batch-size", "2"]
    assert main([*command, "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("drivestack sim: interrupted: 0 of 6 episodes are kept") and "--resume" in err
    monkeypatch.setattr("sim.cli.make_policy", lambda name, **options: IDMPolicy())
    assert main([*command, "--out", str(out), "--resume"]) == 0


def test_a_scenario_edited_before_resuming_is_refused(suite_file, tmp_path):
    cfg = _config(suite_file, tmp_path / "edited")
    with pytest.raises(RunInterrupted):
        run_suite(cfg, InterruptedAtCall(at=_steps_per_batch(cfg) + 1))
    edited = suite_file.parent / "lead_brake.yaml"
    edited.write_text(edited.read_text().replace("duration: 1.0", "duration: 1.5"))
    with pytest.raises(ConfigError, match=r"cannot resume a different run \(scenarios_sha256: "):
        run_suite(cfg, IDMPolicy(), resume=True)


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_writes(suite_file, tmp_path):
    cfg = _config(suite_file, tmp_path / "busy")
    with exclusive(cfg.out), pytest.raises(ConfigError, match="another run is writing there now"):
        run_suite(cfg, IDMPolicy())


def test_an_unreadable_journal_says_how_to_start_over(suite_file, tmp_path):
    cfg = _config(suite_file, tmp_path / "damaged")
    cfg.out.mkdir()
    (cfg.out / JOURNAL).write_text("not json\n")
    with pytest.raises(
        ConfigError, match=r"episodes\.jsonl: line 1 is not valid JSON .*delete it to start the run over"
    ):
        run_suite(cfg, IDMPolicy())


def test_stored_batches_the_plan_lacks_are_refused(tmp_path):
    ledger = start(tmp_path, {"suite": "x"}, 2)
    ledger.append("gone", [0], [EpisodeResult("gone", "cruising", 0, {"score": 1.0})])
    assert ledger.results([("gone", [0])])[0].scenario == "gone"
    with pytest.raises(ConfigError, match=r"holds batches this run does not plan, e\.g\. \('gone', \(0,\)\)"):
        ledger.results([("kept", [0])])
