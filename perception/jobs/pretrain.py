"""`pretrain(cfg)`: self-supervised detector training, no labels.

Three objectives, weighted by the config:

* analysis by synthesis: every grid cell's candidate is rendered into expected
  occupancy and compared with the occupancy the current BEV implies
  (`perception.selfsup.AnalysisBySynthesisLoss`);
* temporal contrastive: the projected embedding of frame t must pick out the
  embedding of an augmented view of the next recorded frame of the same
  episode among the batch's other episodes (`temporal_contrastive_loss`);
* next-frame prediction: a head on the stride features predicts the next sim
  step's BEV returns, warped into the current ego frame (`next_frame_loss`).

The current BEV is the last frame of the stored detector input: it is warped
by the identity, so it is the raster the sensor drew.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from core.config import require
from perception.decode import dense_candidates
from perception.detector import Detector
from perception.frames import pose_in_frame, warp_bev
from perception.jobs.common import TrainConfig, frame_dataset, perception_trainer, run_reading_ahead
from perception.jobs.loader import BatchLoader
from perception.logdata import LogFrameDataset
from perception.selfsup import (
    AnalysisBySynthesisLoss,
    AugmentConfig,
    NextFrameHead,
    ProjectionHead,
    augment_bev,
    next_frame_loss,
    temporal_contrastive_loss,
)
from sim.types import BEV_CHANNELS

KIND = "pretrain"


@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """`TrainConfig` plus the self-supervised objectives.

    Attributes:
        synthesis_weight, contrastive_weight, next_frame_weight: weights of the three losses (>= 0, not all 0).
        contrastive_temperature: InfoNCE temperature.
        projection_dim: output size of the contrastive projection head.
        next_frame_hidden: channels of the next-frame head.
        augment: the view augmentation of the contrastive partner frame.
    """

    out: Path = Path("runs/perception/pretrain")
    synthesis_weight: float = 1.0
    contrastive_weight: float = 0.5
    next_frame_weight: float = 0.5
    contrastive_temperature: float = 0.1
    projection_dim: int = 64
    next_frame_hidden: int = 32
    augment: AugmentConfig = AugmentConfig()

    def __post_init__(self) -> None:
        super().__post_init__()
        weights = (self.synthesis_weight, self.contrastive_weight, self.next_frame_weight)
        require(all(w >= 0 for w in weights) and sum(weights) > 0, "PretrainConfig", "synthesis_weight",
                "loss weights >= 0, not all 0", weights)  # fmt: skip
        require(self.contrastive_temperature > 0, "PretrainConfig", "contrastive_temperature", "> 0",
                self.contrastive_temperature)  # fmt: skip
        for name in ("projection_dim", "next_frame_hidden"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, "PretrainConfig", name, "an int >= 1", value)


def temporal_partner(episode: Tensor) -> Tensor:
    """[F] index of each frame's partner: the next recorded frame of its episode, else the previous, else itself.

    Frames are stored episode-major in time order, so neighbours in the index are neighbours in time.
    """
    n = len(episode)
    index = torch.arange(n)
    nxt, prev = (index + 1).clamp_max(n - 1), (index - 1).clamp_min(0)
    partner = torch.where((episode[prev] == episode) & (index > 0), prev, index)
    return torch.where((episode[nxt] == episode) & (index < n - 1), nxt, partner)


def build_modules(cfg: PretrainConfig) -> nn.ModuleDict:
    det = cfg.perception.detector
    torch.manual_seed(cfg.seed)  # initial weights
    detector = Detector(det)
    return nn.ModuleDict(
        {
            "detector": detector,
            "projection": ProjectionHead(det.embed_dim, cfg.projection_dim),
            "next_frame": NextFrameHead(detector.feature_channels, det.raster, cfg.next_frame_hidden, det.stride),
        }
    ).to(cfg.device)


def pretrain(cfg: PretrainConfig, dataset: LogFrameDataset | None = None) -> Path:
    """Run (or resume) the job; returns `final.safetensors` (or the last checkpoint when stopped early).
    `dataset` replaces every frame of `cfg.data` (e.g. the training split of a folder, `fleet.train`)."""
    det = cfg.perception.detector
    if dataset is None:
        dataset = frame_dataset(cfg, labels=False)
    else:
        dataset.check_compatible(det.frames, det.raster, det.warp_mode)
    modules = build_modules(cfg)
    synthesis = AnalysisBySynthesisLoss(det.raster)
    partner = temporal_partner(dataset.episode)
    bev = slice(len(BEV_CHANNELS) * (det.frames - 1), len(BEV_CHANNELS) * det.frames)  # current frame's channels

    loader = BatchLoader(dataset, cfg.workers)

    def with_partners(index: Tensor) -> Tensor:
        return torch.cat((index, partner[index]))  # the batch's items, then each one's temporal partner

    def loss_fn(index: Tensor, augment: torch.Generator, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        both = loader.load(step, with_partners(index), cfg.device)
        batch = {name: value[: len(index)] for name, value in both.items()}
        partner_x = both["input"][len(index) :]
        x = batch["input"]  # (B, 2K + 3, H, W)
        out = modules["detector"].outputs(x)
        c = dense_candidates(out.dense, det.raster, det.stride)  # (B, G G) candidates
        parts = {"synthesis": synthesis(c.existence, c.position, c.position_cov, c.size, c.heading, x[:, bev])}
        seed = int(torch.randint(0, 2**31 - 1, (), generator=augment))
        view = augment_view(partner_x, seed, cfg)
        z_t = modules["projection"](out.embedding)  # (B, P)
        z_tp = modules["projection"](modules["detector"].embed(view))  # (B, P)
        parts["contrastive"] = temporal_contrastive_loss(z_t, z_tp, cfg.contrastive_temperature, batch["episode"])
        next_here = warp_bev(
            batch["next_bev"], pose_in_frame(batch["pose"], batch["next_pose"]), det.raster, det.warp_mode
        )
        parts["next_frame"] = next_frame_loss(modules["next_frame"](out.features), next_here)
        total = (
            cfg.synthesis_weight * parts["synthesis"]
            + cfg.contrastive_weight * parts["contrastive"]
            + cfg.next_frame_weight * parts["next_frame"]
        )
        return total, {**{k: v.detach() for k, v in parts.items()}, "total": total.detach()}

    pool = torch.arange(len(dataset))
    return run_reading_ahead(perception_trainer(cfg, KIND, modules, pool, loss_fn), loader, with_partners)


def augment_view(x: Tensor, seed: int, cfg: PretrainConfig) -> Tensor:
    """A random view of detector inputs [B, 2K + 3, H, W]: sensor channels thinned, everything rotated."""
    det = cfg.perception.detector
    return augment_bev(x, seed, cfg.augment, det.raster, sensor_channels=len(BEV_CHANNELS) * det.frames)


def main(cfg: PretrainConfig) -> Path:
    return pretrain(cfg)
