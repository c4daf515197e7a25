"""The stack's policy flags are declared by `stack` and added to `drivestack sim` by the composition root;
the simulator's command alone knows none of them."""

from __future__ import annotations

import argparse

import pytest

from sim import cli as sim_cli
from stack.cli import build_parser
from stack.cli import main as cli_main
from stack.policy_flags import STACK_POLICY_FLAGS


def _sim_parser(policy_flags=()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sim_cli.add_parser(parser.add_subparsers(), policy_flags)
    return parser


def test_the_simulators_command_alone_has_no_stack_flags():
    with pytest.raises(SystemExit):
        _sim_parser().parse_args(["sim", "--suite", "hard", "--policy", "idm", "--backend", "onnxruntime"])


def test_given_flags_become_the_policys_options_and_speed_only_ones_stay_out_of_the_settings():
    args = build_parser().parse_args(
        ["sim", "--suite", "hard", "--policy", "stack", "--plan-every", "2", "--runtime-threads", "3"]
    )
    assert sim_cli.policy_options(args) == {"plan_every": 2, "threads": 3}
    assert sim_cli.policy_options(args, results_only=True) == {"plan_every": 2}
    assert {flag.option for flag in STACK_POLICY_FLAGS} >= {"backend", "artifact", "device", "threads", "plan_every"}


def test_a_flag_the_policy_does_not_take_is_one_line_naming_it(tmp_path, capsys):
    command = ["sim", "--suite", "hard", "--policy", "idm", "--plan-every", "2", "--out", str(tmp_path)]
    assert cli_main(command) == 2
    assert "policy 'idm' takes no option 'plan_every'" in capsys.readouterr().err
