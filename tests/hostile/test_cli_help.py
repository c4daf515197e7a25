"""What the command line advertises exists (issue 16): `drivestack sim --help` named a `--list-policies` flag
that did not exist; it now names the registered policies themselves."""

from __future__ import annotations

import pytest

from sim.policies import policy_names
from stack.cli import main


def test_sim_help_names_every_registered_policy_and_no_missing_flag(capsys):
    with pytest.raises(SystemExit) as done:
        main(["sim", "--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert "--list-policies" not in shown
    for name in policy_names():
        assert name in shown
