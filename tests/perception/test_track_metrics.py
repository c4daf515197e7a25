"""Track metrics: RMSE and NEES on hand-built cases, gating, recall and identity switches."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from perception.track_metrics import match_tracks, summarize
from perception.types import Tracks
from sim.types import ObjectList


def truth(xy: list[list[float]], velocity: list[list[float]] | None = None) -> ObjectList:
    """One episode of visible ground-truth objects at `xy`, agent ids 0..M-1."""
    M = len(xy)
    return ObjectList(
        xy=torch.tensor([xy]),
        yaw=torch.zeros(1, M),
        velocity=torch.tensor([velocity or [[0.0, 0.0]] * M]),
        length=torch.full((1, M), 4.0),
        width=torch.full((1, M), 2.0),
        kind=torch.zeros(1, M, dtype=torch.long),
        score=torch.ones(1, M),
        visible=torch.ones(1, M, dtype=torch.bool),
        agent_id=torch.arange(M).unsqueeze(0),
        valid=torch.ones(1, M, dtype=torch.bool),
    )


def tracks(xy: list[list[float]], existence: list[float], variance: float = 1.0) -> Tracks:
    """One episode of tracks at `xy` (zero velocity), covariance `variance * I`, 2 history steps."""
    A = len(xy)
    empty = Tracks.empty(1, A, 2)
    state = torch.zeros(1, A, 2, 4)
    state[0, :, :, :2] = torch.tensor(xy).unsqueeze(1)
    return dataclasses.replace(
        empty,
        state=state,
        state_cov=empty.state_cov * variance,
        existence=torch.tensor([existence]),
        step_valid=torch.ones(1, A, 2, dtype=torch.bool),
        valid=torch.tensor([existence]) > 0,
    )


def test_exact_tracks_have_zero_error():
    match = match_tracks(tracks([[5.0, 1.0], [-3.0, 2.0]], [0.9, 0.8]), truth([[-3.0, 2.0], [5.0, 1.0]]))
    assert match.track_index.tolist() == [[1, 0]]
    result = summarize([match])
    assert result.position_rmse == 0.0 and result.mean_position_nees == 0.0 and result.recall == 1.0


def test_known_offset_gives_rmse_and_nees():
    match = match_tracks(tracks([[0.3, 0.4]], [1.0], variance=0.25), truth([[0.0, 0.0]], velocity=[[1.0, 0.0]]))
    result = summarize([match])
    assert result.position_rmse == pytest.approx(0.5)
    assert result.mean_position_nees == pytest.approx(0.25 / 0.25)
    assert result.mean_state_nees == pytest.approx((0.25 + 1.0) / 0.25)


def test_gate_and_existence_limit_matches():
    scene = truth([[0.0, 0.0], [20.0, 0.0]])
    far = match_tracks(tracks([[0.5, 0.0], [26.0, 0.0]], [0.9, 0.9]), scene, gate=3.0)
    assert far.track_index.tolist() == [[0, -1]]
    assert summarize([far]).recall == 0.5
    unlikely = match_tracks(tracks([[0.5, 0.0], [20.0, 0.0]], [0.9, 0.2]), scene, min_existence=0.5)
    assert unlikely.track_index.tolist() == [[0, -1]]


def test_identity_switch_is_counted_and_kept_pairs_win():
    scene = truth([[0.0, 0.0]])
    first = match_tracks(tracks([[0.0, 0.0], [0.8, 0.0]], [0.9, 0.9]), scene)
    # The kept pair (slot 0) wins over a closer newcomer while inside the gate...
    kept = match_tracks(tracks([[1.0, 0.0], [0.1, 0.0]], [0.9, 0.9]), scene, previous=first)
    assert kept.track_index.tolist() == [[0]]
    # ...and when slot 0 is gone, the object moves to slot 1: one switch.
    moved = match_tracks(tracks([[1.0, 0.0], [0.1, 0.0]], [0.0, 0.9]), scene, previous=kept)
    assert moved.track_index.tolist() == [[1]]
    assert summarize([first, kept, moved]).id_switches == 1


def test_nothing_matched_reports_nan():
    result = summarize([match_tracks(tracks([[0.0, 0.0]], [0.0]), truth([[0.0, 0.0]]))])
    assert math.isnan(result.position_rmse) and result.recall == 0.0 and result.matched == 0
