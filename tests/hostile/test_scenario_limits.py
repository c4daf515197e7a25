"""Everything a scenario file can get wrong is found when it is loaded (issue 16): 200 groups of 64 walkers passed
loading and then asked for 2.6 GB in the start-overlap check; `sensor.raster_noise: {uniform: [0.02, 0.04]}` loaded
and then failed half the episodes at run time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sim.scenarios import build_batch, load_scenario, packaged_scenarios, scenario_path
from sim.scenarios.families import FAMILIES
from sim.scenarios.family import MAX_AGENT_SLOTS
from sim.scenarios.schema import ScenarioError

WALKERS = {"kind": "pedestrian", "behaviour": "walk", "count": 64, "from_s": 20.0, "to_s": 30.0, "to_d": 8.0}


REFUSE_IN_A_FRESH_PROCESS = f"""
import re, time
from sim.scenarios import load_scenario, scenario_path
from sim.scenarios.schema import ScenarioError
start = time.perf_counter()
try:
    load_scenario(scenario_path("custom_example")).with_overrides({{"agents": [{WALKERS!r}] * 200}})
except ScenarioError as exc:
    print(exc)
# VmHWM is this program's own peak: getrusage's ru_maxrss would also count the copy of the (large) test
# process this one was forked from before it ran.
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(time.perf_counter() - start, peak)
"""


def test_too_many_agents_are_refused_at_load_quickly_and_in_little_memory():
    # A process of its own: its peak memory is this load's, not an earlier test's high-water mark.
    done = subprocess.run([sys.executable, "-c", REFUSE_IN_A_FRESH_PROCESS], capture_output=True, text=True, check=True)
    message, measured = done.stdout.strip().splitlines()
    assert f"up to 12800 agents, more than the simulator's capacity of {MAX_AGENT_SLOTS}" in message
    seconds, peak_kib = measured.split()
    assert float(seconds) < 5.0
    assert int(peak_kib) < 1_000_000  # the imports take ~0.3 GB; building this scene took 23 GB


def test_agents_up_to_the_capacity_still_load():
    load_scenario(scenario_path("custom_example")).with_overrides({"agents": [WALKERS] * (MAX_AGENT_SLOTS // 64)})


@pytest.mark.parametrize("name", [n for n in packaged_scenarios() if not n.startswith(("crowd_", "ethucy"))])
def test_each_family_counts_the_slots_its_builder_fills(name):
    scenario = load_scenario(scenario_path(name))
    built = build_batch(scenario, [0, 1]).agents.valid.shape[1]
    assert built == max(1, FAMILIES[scenario.family].slots(scenario))  # an empty scene keeps one blank slot


@pytest.mark.parametrize("noise", [0.04, {"uniform": [0.02, 0.04]}])
def test_raster_noise_beyond_what_the_sensor_can_draw_is_refused_at_load(noise):
    with pytest.raises(ScenarioError, match=r"sensor\.raster_noise"):
        load_scenario(scenario_path("merge")).with_overrides({"sensor.raster_noise": noise})
