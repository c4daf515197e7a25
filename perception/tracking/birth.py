"""Births: detections that no track explains seed tracks in the least likely slots.

A detection's birth existence is e_n * unexplained_n: the probability that it
is a real object that no current track accounts for. The k = min(N, A) most
probable births are paired with the k slots of lowest existence (best birth
with emptiest slot) and a pair is replaced when the birth is the more probable
of the two. Since births are sorted down and slots up, the replaced pairs are
exactly those that make the A slots hold the A most probable hypotheses among
old tracks and births: a top-k selection whose probabilities travel with it,
not a threshold. Shapes stay static (topk, gather, scatter).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class BirthPlan:
    """Which slots take which detections.

    Attributes:
        slot_index: [B, k] long, slots offered to births, lowest existence first.
        det_index: [B, k] long, detections offered, highest birth existence first.
        existence: [B, k] float, birth existence of those detections.
        replace: [B, k] bool, the birth replaces the slot's track.
        replaced: [B, A] bool, the same per slot.
    """

    slot_index: Tensor
    det_index: Tensor
    existence: Tensor
    replace: Tensor
    replaced: Tensor


def plan_births(track_existence: Tensor, det_existence: Tensor, unexplained: Tensor) -> BirthPlan:
    """Pair births with slots.

    Args:
        track_existence: [B, A] after the update. det_existence: [B, N], 0 for empty
        slots. unexplained: [B, N] probability that no track explains each detection.
    """
    slots, dets = track_existence.shape[1], det_existence.shape[1]
    k = min(slots, dets)
    birth = det_existence * unexplained  # (B, N)
    birth_top, det_index = torch.topk(birth, k, dim=1)  # (B, k) descending
    neg_slot, slot_index = torch.topk(-track_existence, k, dim=1)  # (B, k) lowest existence first
    replace = birth_top > -neg_slot
    replaced = torch.zeros_like(track_existence, dtype=torch.bool).scatter(1, slot_index, replace)
    return BirthPlan(
        slot_index=slot_index, det_index=det_index, existence=birth_top, replace=replace, replaced=replaced
    )


def _expand_index(index: Tensor, like: Tensor) -> Tensor:
    """[B, k] -> [B, k, *like.shape[2:]] for gather/scatter along dim 1."""
    tail = like.shape[2:]
    return index.reshape(*index.shape, *([1] * len(tail))).expand(*index.shape, *tail)


def take_detections(values: Tensor, plan: BirthPlan) -> Tensor:
    """[B, k, ...] the offered detections' rows of `values [B, N, ...]`."""
    return values.gather(1, _expand_index(plan.det_index, values))


def place(field: Tensor, births: Tensor, plan: BirthPlan) -> Tensor:
    """`field [B, A, ...]` with the replaced slots set to `births [B, k, ...]`."""
    index = _expand_index(plan.slot_index, field)
    current = field.gather(1, index)
    mask = plan.replace.reshape(*plan.replace.shape, *([1] * (field.dim() - 2)))
    return field.scatter(1, index, torch.where(mask, births, current))
