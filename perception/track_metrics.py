"""Tracking accuracy against ground truth: position RMSE, NEES and identity switches.

Evaluation code, outside the stack: it may threshold (a track counts when its
existence reaches `min_existence`) and loop over episodes. Ground truth is an
`ObjectList` from `sim.sensors.ground_truth`, whose slot m is agent m, so a
truth slot is an agent identity. Each step, truth objects are matched one to
one to tracks (CLEAR-MOT style): a pair matched at the previous step is kept
while it stays within the gate, the rest are assigned by minimum total distance
(Hungarian), and a match farther than the gate is no match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from perception.types import STATE_POS, Tracks
from sim.types import ObjectList

# Cost of a pair beyond the gate: large enough that the assignment never prefers it.
_FORBIDDEN = 1e9


@dataclass(frozen=True)
class TrackMatch:
    """Ground-truth objects of one step matched to tracks.

    Attributes:
        eligible: [B, M] bool, truth objects that should be tracked (valid, and visible if asked).
        track_index: [B, M] long, matched track slot, -1 when unmatched.
        squared_error: [B, M] float64, squared position error, m^2; 0 where unmatched.
        position_nees: [B, M] float64, normalised estimation error squared of the
            position (2 dof: averages 2 when the covariance is honest); 0 where unmatched.
        state_nees: [B, M] float64, the same for (position, velocity) (4 dof); 0 where unmatched.
    """

    eligible: Tensor
    track_index: Tensor
    squared_error: Tensor
    position_nees: Tensor
    state_nees: Tensor

    @property
    def matched(self) -> Tensor:
        """[B, M] bool, the truth object has a track."""
        return self.track_index >= 0


@dataclass(frozen=True)
class TrackSummary:
    """Errors over a sequence of matches; NaN where nothing was matched.

    Attributes:
        position_rmse: m, over matched truth objects and steps.
        mean_position_nees: expected 2 for a consistent filter.
        mean_state_nees: expected 4 for a consistent filter.
        recall: matched / eligible truth objects.
        id_switches: times a truth object matched at two consecutive steps changed track.
        matched: number of matched (object, step) pairs.
    """

    position_rmse: float
    mean_position_nees: float
    mean_state_nees: float
    recall: float
    id_switches: int
    matched: int


def _assign(cost: np.ndarray, previous: np.ndarray, gate: float) -> np.ndarray:
    """[M] track per truth (-1 none) for one episode: kept pairs first, then Hungarian on the rest."""
    result = np.full(cost.shape[0], -1, dtype=np.int64)
    keep = (previous >= 0) & (previous < cost.shape[1])
    rows = np.nonzero(keep)[0]
    kept = rows[cost[rows, previous[rows]] <= gate]
    result[kept] = previous[kept]
    free_rows = np.setdiff1d(np.arange(cost.shape[0]), kept)
    free_cols = np.setdiff1d(np.arange(cost.shape[1]), result[kept])
    sub = cost[np.ix_(free_rows, free_cols)]
    if sub.size:
        r, c = linear_sum_assignment(np.where(sub <= gate, sub, _FORBIDDEN))
        ok = sub[r, c] <= gate
        result[free_rows[r[ok]]] = free_cols[c[ok]]
    return result


def _nees(error: Tensor, cov: Tensor) -> Tensor:
    """[...] error^T cov^-1 error for `error [..., d]`, `cov [..., d, d]`, float64."""
    return (error.unsqueeze(-2) @ torch.linalg.solve(cov, error.unsqueeze(-1)))[..., 0, 0]


def match_tracks(
    tracks: Tracks,
    truth: ObjectList,
    previous: TrackMatch | None = None,
    gate: float = 2.0,
    min_existence: float = 0.5,
    visible_only: bool = True,
) -> TrackMatch:
    """Match truth objects [B, M] to the current step of tracks [B, A] and measure the errors.

    Args:
        previous: the previous step's match, whose pairs are kept while within `gate`.
        gate: largest position distance of a match, m. Kept pairs stay matched up to
            it, so in dense crowds a smaller gate (1 m) keeps a truth object from
            clinging to a neighbour's track.
        min_existence: tracks with lower existence are not reported tracks.
        visible_only: only visible truth objects are eligible (invisible ones cannot be detected).
    """
    eligible = truth.valid & truth.visible if visible_only else truth.valid
    reported = tracks.valid & (tracks.existence >= min_existence)
    est = tracks.current.detach().double()  # (B, A, 4)
    cov = tracks.current_cov.detach().double()  # (B, A, 4, 4)
    dist = torch.cdist(truth.xy.double(), est[..., STATE_POS])  # (B, M, A)
    dist = torch.where(eligible.unsqueeze(-1) & reported.unsqueeze(1), dist, torch.full_like(dist, math.inf))
    prev = previous.track_index if previous is not None else torch.full_like(truth.agent_id, -1)
    index = torch.stack(
        [torch.from_numpy(_assign(d.cpu().numpy(), p.cpu().numpy(), gate)) for d, p in zip(dist, prev, strict=True)]
    ).to(truth.xy.device)
    safe = index.clamp_min(0)
    rows = torch.arange(index.shape[0], device=index.device).unsqueeze(-1)
    matched_state, matched_cov = est[rows, safe], cov[rows, safe]  # (B, M, 4), (B, M, 4, 4)
    truth_state = torch.cat((truth.xy, truth.velocity), -1).double()
    error = matched_state - truth_state
    pos_nees = _nees(error[..., STATE_POS], matched_cov[..., STATE_POS, STATE_POS])
    state_nees = _nees(error, matched_cov)
    hit = index >= 0
    zero = torch.zeros_like(pos_nees)
    return TrackMatch(
        eligible=eligible,
        track_index=index,
        squared_error=torch.where(hit, error[..., STATE_POS].pow(2).sum(-1), zero),
        position_nees=torch.where(hit, pos_nees, zero),
        state_nees=torch.where(hit, state_nees, zero),
    )


def count_id_switches(matches: Sequence[TrackMatch]) -> int:
    """Times a truth object matched at two consecutive steps is matched to a different track."""
    switches = 0
    for before, after in zip(matches[:-1], matches[1:], strict=True):
        both = before.matched & after.matched
        switches += int((both & (before.track_index != after.track_index)).sum())
    return switches


def summarize(matches: Sequence[TrackMatch]) -> TrackSummary:
    """Pool per-step matches into RMSE, mean NEES, recall and identity switches."""
    hit = torch.stack([m.matched for m in matches])
    count = int(hit.sum())
    eligible = int(torch.stack([m.eligible for m in matches]).sum())

    def mean(values: list[Tensor]) -> float:
        return float(torch.stack(values)[hit].mean()) if count else math.nan

    return TrackSummary(
        position_rmse=math.sqrt(mean([m.squared_error for m in matches])) if count else math.nan,
        mean_position_nees=mean([m.position_nees for m in matches]),
        mean_state_nees=mean([m.state_nees for m in matches]),
        recall=count / eligible if eligible else math.nan,
        id_switches=count_id_switches(matches),
        matched=count,
    )
