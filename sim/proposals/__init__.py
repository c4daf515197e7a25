"""Proposals for both planners, PDM-Closed style: IDM along offset paths behind a leader taken from
the obstacles' outcomes, lane changes, stops and the previous plan, each driven through the simulator's
controller and bicycle before it is scored (`generate`)."""

from sim.proposals.config import ProposalConfig
from sim.proposals.generate import Proposals, generate
from sim.proposals.obstacles import Obstacles, constant_velocity
from sim.proposals.previous import PreviousPlan
from sim.proposals.simulate import Driven, Reference

__all__ = [
    "Driven",
    "Obstacles",
    "PreviousPlan",
    "ProposalConfig",
    "Proposals",
    "Reference",
    "constant_velocity",
    "generate",
]
