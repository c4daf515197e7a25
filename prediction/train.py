"""`drivestack prediction train`: fit the predictor's ELBO on trajectory windows.

Data: an ETH/UCY fold (`ethucy_root` + `scene`: the fold's train split, i.e.
every other scene) and/or folders of simulator drive logs (`logs`, cut into
windows by `prediction.logwindows`), held in memory. Each step draws `batch_size` windows (the shared
`core.training` loop: AdamW, warm-up + cosine LR, resumable checkpoints),
rotates each window by a random angle (augmentation: the model is
translation invariant by construction, rotation invariance is learned), builds
`Tracks` from the observed steps only (`prediction.inputs`) and minimises, per
valid future step, one of two objectives (`objective`):

* "wta" (default): the relaxed winner-takes-all mode assignment
  (`Predictor.winner_takes_all`):
  - [ sum_z w_z log p(y | x, z) + log p(z* | x) ] + `wta_distance` * sum_t |mu_z*,t - y_t|
  with z* the mode closest to the truth, w_z* = 1 - `wta_relax`.
* "elbo": Trajectron++'s bound - [ E_q log p(y | x, z) - beta * max(KL(q || p), kl_min) ],
  beta annealed from 0 to `kl_weight` over `kl_anneal_steps` (a sigmoid, as
  Trajectron++ anneals it), `kl_min` free nats per agent. Kept as the reference:
  its posterior collapses onto one value of z and the prior follows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from core.checkpoint import load_weights
from core.config import ConfigError, require
from core.io import jsonable
from core.training import FINAL_NAME, LoopSettings, Trainer
from prediction.checkpoint import KIND_TRAIN, save_predictor
from prediction.config import PredictorConfig
from prediction.ethucy import SCENES, load_split
from prediction.inputs import tracks_from_positions
from prediction.logwindows import folder_windows
from prediction.model import MapInput, Predictor
from prediction.windows import TrajectoryWindows

OBJECTIVES = ("wta", "elbo")
# A job stored before `objective` existed trained the ELBO: resuming it under today's default is refused.
IMPLIED_JOB = {"objective": "elbo"}


@dataclass(frozen=True)
class PredictionTrainConfig(LoopSettings):
    """A prediction training job: the loop's fields (`core.training.LoopSettings`, with the defaults below) and

    Attributes:
        ethucy_root: ETH/UCY folder (`<root>/<scene>/{train,val,test}`); None = no ETH/UCY data.
        scene: the held-out scene of the fold (train on `<root>/<scene>/train`).
        logs: folders of drive logs (`drivestack fleet record`), their windows in the order given, each
            folder's drives in their suite's order.
        predictor: the model.
        objective: "wta" (mode assignment) or "elbo" (the CVAE bound); see the module docstring.
        wta_relax: share of the reconstruction weight the non-winning modes split ("wta").
        wta_distance: nats per metre of the winner's mean-path error ("wta"); without it a wide
            drift covariance explains a turn and the modes' means barely move.
        kl_weight: final beta of the KL term ("elbo").
        kl_anneal_steps: steps over which beta rises (sigmoid centred at half of it).
        kl_min: free nats per agent: KL below this is not penalised.
        rotate: random rotation of every training window.
        position_std: m, the position noise assumed for observed positions (feeds the track covariances).
    """

    out: Path = Path("runs/prediction")
    ethucy_root: Path | None = None
    scene: str | None = None
    logs: tuple[Path, ...] = ()
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 100
    checkpoint_every: int = 250
    objective: str = "wta"
    wta_relax: float = 0.05
    wta_distance: float = 1.0
    kl_weight: float = 1.0
    kl_anneal_steps: int = 1000
    kl_min: float = 0.07
    rotate: bool = True
    position_std: float = 0.05

    def __post_init__(self) -> None:
        o = type(self).__name__
        super().__post_init__()
        require(isinstance(self.predictor, PredictorConfig), o, "predictor", "a PredictorConfig", self.predictor)
        has_ethucy = self.ethucy_root is not None
        require(has_ethucy == (self.scene is not None), o, "scene", "given exactly when ethucy_root is", self.scene)
        require(self.scene is None or self.scene in SCENES, o, "scene", f"one of {SCENES}", self.scene)
        require(self.objective in OBJECTIVES, o, "objective", f"one of {OBJECTIVES}", self.objective)
        require(0 <= self.wta_relax < 1, o, "wta_relax", "in [0, 1)", self.wta_relax)
        require(self.wta_distance >= 0, o, "wta_distance", ">= 0 nats/m", self.wta_distance)
        require(self.kl_weight >= 0, o, "kl_weight", ">= 0", self.kl_weight)
        require(isinstance(self.kl_anneal_steps, int) and self.kl_anneal_steps >= 0, o, "kl_anneal_steps",
                "an int >= 0", self.kl_anneal_steps)  # fmt: skip
        require(self.kl_min >= 0, o, "kl_min", ">= 0", self.kl_min)
        require(self.position_std > 0, o, "position_std", "> 0 m", self.position_std)


def training_windows(cfg: PredictionTrainConfig, extra: TrajectoryWindows | None = None) -> TrajectoryWindows:
    """Every training window of the job (and `extra`, e.g. windows cut from drive logs), agent slots
    padded to the widest source."""
    if cfg.ethucy_root is None and not cfg.logs and extra is None:
        raise ConfigError("PredictionTrainConfig.logs: expected at least one log folder when there is no ETH/UCY "
                          "fold and no other windows, got ()")  # fmt: skip
    parts = [] if extra is None else [extra]
    if cfg.ethucy_root is not None:
        parts.append(
            load_split(cfg.ethucy_root, cfg.scene, "train", cfg.predictor.history, cfg.predictor.horizon).windows
        )
    parts += [folder_windows(folder) for folder in cfg.logs]
    for p in parts:
        if (p.history, p.horizon) != (cfg.predictor.history, cfg.predictor.horizon) or abs(
            p.dt - cfg.predictor.dt
        ) > 1e-9:
            raise ConfigError(
                f"PredictionTrainConfig: windows have (history, horizon, dt) = {(p.history, p.horizon, p.dt)}, "
                f"the predictor expects {(cfg.predictor.history, cfg.predictor.horizon, cfg.predictor.dt)}"
            )
    return TrajectoryWindows.concat(parts)


def kl_beta(step: int, cfg: PredictionTrainConfig) -> float:
    """Annealed KL weight: a sigmoid from ~0 to `kl_weight`, centred at `kl_anneal_steps / 2`."""
    if cfg.kl_anneal_steps == 0:
        return cfg.kl_weight
    width = cfg.kl_anneal_steps / 10
    return cfg.kl_weight / (1.0 + math.exp(-(step - cfg.kl_anneal_steps / 2) / width))


def rotate_windows(windows: TrajectoryWindows, angle: Tensor) -> TrajectoryWindows:
    """Each window rotated about the origin by `angle [S]` rad (agent positions and lanes)."""
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)  # [S, 2, 2]

    def turned(points: Tensor, present: Tensor) -> Tensor:
        out = torch.einsum("sij,sabj->sabi", rot.to(points.dtype), points)
        return torch.where(present[..., None], out, torch.zeros_like(out))

    return dataclasses.replace(windows, xy=turned(windows.xy, windows.present),
                               lanes=turned(windows.lanes, windows.lanes_valid))  # fmt: skip


def objective_loss(
    model: Predictor, windows: TrajectoryWindows, cfg: PredictionTrainConfig, step: int
) -> tuple[Tensor, dict[str, Tensor]]:
    """The job's objective per valid future step (negated, to minimise) and its reports, on one batch."""
    obs_xy, obs_present = windows.observed()
    tracks = tracks_from_positions(
        obs_xy, obs_present, windows.dt, windows.class_probs, windows.size, position_std=cfg.position_std
    )
    future, future_present = windows.future()
    lanes = MapInput.of_windows(windows)
    if cfg.objective == "wta":
        terms = model.winner_takes_all(tracks, future, future_present, lanes, relax=cfg.wta_relax)
        penalty = terms["classification"] + cfg.wta_distance * terms["distance"]
    else:
        terms = model.elbo(tracks, future, future_present, lanes)
        beta = kl_beta(step, cfg)
        penalty = beta * terms["kl"].clamp_min(cfg.kl_min)
    trained = terms["trained"]
    steps = terms["steps"][trained].sum().clamp_min(1.0)
    loss = -(terms["reconstruction"][trained] - penalty[trained]).sum() / steps
    shown = ("classification", "distance") if cfg.objective == "wta" else ("kl",)
    mean = lambda t: t[trained].mean().detach() if bool(trained.any()) else torch.zeros(())  # noqa: E731
    report = {
        "total": loss.detach(),
        "nll_per_step": -(terms["log_likelihood"][trained].sum() / steps).detach(),
        **{name: mean(terms[name]) for name in shown},
        **({"beta": torch.tensor(beta)} if cfg.objective == "elbo" else {}),
    }
    return loss, report


def train(
    cfg: PredictionTrainConfig,
    extra: TrajectoryWindows | None = None,
    *,
    initial: Mapping[str, Tensor] | None = None,
) -> Path:
    """Run the job; returns the final model file (`final.safetensors`), or the last checkpoint if stopped.
    `extra` windows (e.g. cut from drive logs, `fleet.train`) join the config's sources. `initial` weights
    (the predictor's state_dict names) replace the seed's random ones: a federated round starts every vehicle
    from the global model (`fleet.federated`); data order and augmentation still follow `cfg.seed`, and a
    resumed job takes its weights from its checkpoint as always."""
    windows = training_windows(cfg, extra).to(cfg.device)
    with torch.random.fork_rng(devices=[]):  # initial weights from the job's seed, global RNG untouched
        torch.manual_seed(cfg.seed)
        model = Predictor(cfg.predictor).to(cfg.device)
    if initial is not None:
        load_weights(model, dict(initial), "initial weights", "predictor")
    modules = nn.ModuleDict({"predictor": model})
    pool = torch.arange(windows.batch_size)

    def loss_fn(index: Tensor, augment: torch.Generator, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        batch = windows.index(index.to(windows.device)).trimmed()
        if cfg.rotate:
            angle = torch.rand(len(index), generator=augment) * (2 * math.pi)
            batch = rotate_windows(batch, angle.to(batch.device))
        return objective_loss(model, batch, cfg, step)

    def finalize(steps: int, seconds: float) -> Path:
        return save_predictor(model, Path(cfg.out) / FINAL_NAME, trained_by=KIND_TRAIN, steps=steps,
                              train_seconds=seconds, job=jsonable(cfg))  # fmt: skip

    def normalise_job(name: str, value: object) -> object:
        if name == "predictor":  # fields added since the checkpoint take their defaults
            return jsonable(PredictorConfig.from_dict(value))
        return value

    trainer = Trainer(cfg, KIND_TRAIN, modules, pool, loss_fn, cfg.predictor.to_dict(), finalize, normalise_job,
                      IMPLIED_JOB)  # fmt: skip
    return trainer.run()
