"""The stack's policies and the deploy backends are plug-ins of the package metadata (issue 17): `make_policy("stack")`
works from plain Python, and nothing registers itself by being imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.plugins import plugin_names
from sim.policies import make_policy, policy_names
from stack.policy import BACKENDS

FRESH = """
import sys
from sim.policies import make_policy, policy_names
names = policy_names()
imported_before = 'stack.policy' in sys.modules
policy = make_policy('stack-gt')
print(' '.join(names), imported_before, type(policy).__name__)
"""


def test_a_fresh_interpreter_finds_the_stack_policies_without_importing_stack_first():
    done = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, check=True)
    names, imported_before, built = done.stdout.split()[:-2], done.stdout.split()[-2], done.stdout.split()[-1]
    assert {"stack", "stack-argmax", "stack-gt", "stack-objects", "pdm-stack", "pdm", "idm"} <= set(names)
    assert imported_before == "False"  # listing names imports nothing; building one imports its module
    assert built == "GroundTruthStack"


def test_the_deploy_backends_are_plug_ins_of_the_stack_policy():
    assert {"onnxruntime", "tensorrt"} <= set(plugin_names(BACKENDS))
    with pytest.raises(ValueError, match="--artifact DIR is required"):
        make_policy("stack", backend="onnxruntime")
    with pytest.raises(ValueError, match="backend 'tflite': expected one of torch, onnxruntime, tensorrt"):
        make_policy("stack", backend="tflite")


def test_an_unknown_policy_lists_the_plug_ins_too():
    with pytest.raises(ValueError, match="unknown policy 'nope'; available: .*stack-gt"):
        make_policy("nope")
    assert "stack" in policy_names()
