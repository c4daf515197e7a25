"""What the perception jobs share about their data: the names of the label and ghost tensors of an item,
and splits that never cut an episode in two.

    dataset = LogFrameDataset(index, index.drives, ..., labels=True)   # `perception.logdata`
    train, val = split_by_episode(dataset, val_fraction=0.1, seed=0)
    labeled = labeled_mask(len(dataset), fraction=0.1, seed=0)
    labels = labels_of(batch)                                            # an ObjectList

Splits are by episode (drive), never by frame: frames of one episode are near duplicates.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from sim.types import ObjectList

LABELS = "labels"
GHOSTS = "ghosts"


class Episodic(Protocol):
    """A dataset whose items know their episode: `episode [F]`, item i's episode id."""

    episode: Tensor


def labels_of(batch: dict[str, Tensor]) -> ObjectList:
    """The ground-truth `ObjectList` of a (collated) dataset item."""
    return ObjectList.from_flat(batch, LABELS)


def ghosts_of(batch: dict[str, Tensor]) -> ObjectList | None:
    """The object sensor's ghosts (`agent_id == -1`, G slots) of a (collated) dataset item, or None
    for a dataset recorded without them."""
    if not any(name in batch for name in ObjectList.flat_names(GHOSTS)):
        return None
    return ObjectList.from_flat(batch, GHOSTS)


def split_by_episode(dataset: Episodic, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Frame indices (train, val) with `round(val_fraction * episodes)` whole episodes in val."""
    if not 0 <= val_fraction <= 1:
        raise ValueError(f"split_by_episode.val_fraction: expected in [0, 1], got {val_fraction!r}")
    episodes = torch.unique(dataset.episode)
    order = torch.randperm(len(episodes), generator=torch.Generator().manual_seed(seed))
    val_episodes = episodes[order[: round(val_fraction * len(episodes))]]
    in_val = torch.isin(dataset.episode, val_episodes)
    return torch.nonzero(~in_val).flatten(), torch.nonzero(in_val).flatten()


def labeled_mask(num_frames: int, fraction: float, seed: int) -> Tensor:
    """[num_frames] bool with exactly `round(fraction * num_frames)` frames labeled, chosen at random.

    Frames, not episodes, are chosen: for the label-efficiency study what
    matters is how many labeled frames the detector sees, and random frames
    spread them over every scenario. (Choosing whole episodes would model a
    fleet labelling whole drives; pass episode-filtered indices for that.)
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"labeled_mask.fraction: expected in [0, 1], got {fraction!r}")
    if num_frames < 0:
        raise ValueError(f"labeled_mask.num_frames: expected >= 0, got {num_frames!r}")
    chosen = torch.randperm(num_frames, generator=torch.Generator().manual_seed(seed))[: round(fraction * num_frames)]
    mask = torch.zeros(num_frames, dtype=torch.bool)
    mask[chosen] = True
    return mask
