"""End-to-end fine-tuning of the stack with a planning loss.

    drivestack stack train --weights weights/stack.safetensors --out runs/stack-e2e

The expert drives are drive logs (`sim.drivelogs`): the folder `logs`, or
else the job records the expert (`pdm-gt`) driving `suite` x `seeds` at the
stack's raster into `<out>/drives` (once: a resumed job reuses its
recording), and reads each drive back with `stack.episodes.recorded_drive`,
in the suite's order. Logs at another raster than the detector's are refused:
the stack would perceive frames of the wrong geometry. A training
item is (episode, step): the stack perceives the `warmup_frames` frames before
the step without gradients (the tracker's history fills), then takes one full
step with gradients and plans. The loss is the expectation, under the
planner's softmin weights over its candidates, of

    imitation:  mean squared distance to the expert's actual future positions / imitation_scale
    hindsight:  the collision cost of the candidate against every agent's true future
                (`planning.collision` with the true boxes and a 0.1 m position blur)

so a candidate that collides in hindsight should have been given a high risk
and one close to the expert a low one. The weights come from the risk, the
risk from the forecast (predictor) and the tracks (detector through the
tracker), so the loss trains the predictor and the detector together. The
loop (AdamW, warm-up + cosine, checkpoints, resume) is `core.training`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from core.config import Timing, require
from core.distributed import barrier, process_group
from core.training import LoopSettings, Trainer
from planning.collision import box_probability, first_hit_probability, minkowski_half_sizes
from sim.config import RasterConfig
from sim.drivelogs.format import LogError
from sim.drivelogs.index import INDEX_FILE, LogIndex, build_index, read_each, require_raster
from sim.drivelogs.recorder import drive_name, record_suite
from sim.policies import policy_at_raster
from sim.scenarios import resolve_suite
from stack.episodes import Futures, RecordedBatch, futures, recorded_drive
from stack.model import Stack
from stack.policy import stack_weights

KIND = "stack-e2e"
DRIVES = "drives"  # <out>/drives: the expert drives a job records itself (no `logs` given)
HINDSIGHT_POSITION_STD = 0.1  # m, blur of the true agent positions (keeps the cost smooth)


@dataclass(frozen=True)
class EndToEndConfig(LoopSettings):
    """The fine-tuning job: the loop's fields (`core.training.LoopSettings`, with the defaults below) and

    Attributes:
        weights: the stack to start from (None: the shipped stack, `stack.policy.stack_weights`).
        logs: a folder of expert drive logs to train on (None: record `suite` x `seeds` driven by `expert`
            into `<out>/drives`; the three are unused otherwise).
        suite: scenarios of the recorded episodes.
        seeds: episode seeds (clear of the evaluation's, which start at 5000).
        expert: the policy that drives the recorded episodes.
        sigma: the risk sensitivity the stack plans with during training.
        warmup_frames: frames perceived without gradients before each item's step.
        item_stride: sim steps between the items of an episode.
        imitation_scale: m^2 that count as one unit of imitation loss.
        collision_weight: weight of the hindsight collision cost.
    """

    out: Path = Path("runs/stack-e2e")
    weights: Path | None = None
    logs: Path | None = None
    suite: str = "hard"
    seeds: tuple[int, ...] = tuple(range(400, 404))
    expert: str = "pdm-gt"
    sigma: float = 1.0
    warmup_frames: int = 32
    item_stride: int = 4
    imitation_scale: float = 4.0
    collision_weight: float = 1.0
    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        o = type(self).__name__
        super().__post_init__()
        require(self.logs is None or isinstance(self.logs, str | Path), o, "logs", "None or a folder path", self.logs)
        require(len(self.seeds) >= 1, o, "seeds", "at least one seed", self.seeds)
        for name in ("warmup_frames", "item_stride"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, o, name, "an int >= 1", value)
        require(self.imitation_scale > 0, o, "imitation_scale", "> 0 m^2", self.imitation_scale)
        require(self.collision_weight >= 0, o, "collision_weight", ">= 0", self.collision_weight)


def hindsight_collision(candidates: Tensor, truth: Futures, margin: float = 0.0) -> Tensor:
    """[K, C] expected number of first contacts of each candidate `[K, C, T, 3]` with the true agents."""
    xy, yaw = candidates[..., :2], candidates[..., 2]
    heading = torch.stack((torch.cos(yaw), torch.sin(yaw)), dim=-1)[:, :, None]  # (K, C, 1, T, 2)
    offset = truth.agent_xy[:, None] - xy[:, :, None]  # (K, C, N, T, 2)
    trust = torch.ones_like(truth.agent_valid, dtype=xy.dtype)[:, None]  # the true heading is known
    along, across = minkowski_half_sizes(
        heading, truth.agent_heading[:, None], trust, truth.agent_size[:, None, :, None], margin
    )
    cov = HINDSIGHT_POSITION_STD**2 * torch.eye(2, dtype=xy.dtype, device=xy.device)
    step = box_probability(offset, cov, heading, along, across) * truth.agent_valid[:, None]  # (K, C, N, T)
    return first_hit_probability(step).sum(-1).sum(-1)


def planning_loss(stack: Stack, frames: list, truth: Futures, cfg: EndToEndConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Warm-up on `frames[:-1]` without gradients, plan on `frames[-1]`, score the candidates in hindsight."""
    with torch.no_grad():
        state = stack.initial_state(frames[0])
        for frame in frames[1:-1]:
            state = stack.perceive(state, frame)
    sigma = torch.full_like(frames[-1].ego_speed, cfg.sigma)
    plan = stack.step_outputs(state, frames[-1], sigma).plan
    candidates = plan.candidates  # (K, C, T, 3)
    imitation = (candidates[..., :2] - truth.ego_xy[:, None]).pow(2).sum(-1).mean(-1) / cfg.imitation_scale
    hindsight = hindsight_collision(candidates, truth)
    w = plan.candidate_weights
    loss = (w * (imitation + cfg.collision_weight * hindsight)).sum(-1).mean()
    chosen = plan.chosen[:, None]
    report = {
        "total": loss.detach(),
        "imitation": (w * imitation).sum(-1).mean().detach(),
        "hindsight": (w * hindsight).sum(-1).mean().detach(),
        "chosen_hindsight": hindsight.gather(1, chosen).mean().detach(),
    }
    return loss, report


class ItemTable:
    """Every (recorded batch, episode, step) with a full warm-up before it and a full horizon after it."""

    def __init__(self, recorded: list[RecordedBatch], cfg: EndToEndConfig, timing: Timing):
        self.recorded, self.cfg, self.timing = recorded, cfg, timing
        horizon = timing.horizon_steps * timing.sim_steps_per_sample
        rows = [
            (r, e, t)
            for r, batch in enumerate(recorded)
            for e in range(batch.batch_size)
            for t in range(cfg.warmup_frames, batch.steps - horizon, cfg.item_stride)
        ]
        if not rows:
            raise ValueError("EndToEndConfig: the recorded episodes are too short for one warm-up plus a horizon")
        self.items = torch.tensor(rows, dtype=torch.long)  # (P, 3)

    def batch(self, index: Tensor) -> tuple[list, Futures]:
        """The frames (warm-up then the step) and the truth of the items `index`, grouped as one batch."""
        rows = self.items[index]
        frames, truths = [], []
        for k in range(self.cfg.warmup_frames, -1, -1):
            parts = [self.recorded[int(r)].frame(e[None], (t - k)[None]) for r, e, t in rows]
            frames.append(_cat_frames(parts))
        for r, e, t in rows:
            truths.append(futures(self.recorded[int(r)], e[None], t[None], self.timing))
        return frames, _cat_futures(truths)


def _cat_frames(parts: list):
    cls = type(parts[0])
    return cls(**{name: torch.cat([getattr(p, name) for p in parts]) for name in cls.__dataclass_fields__})


def _cat_futures(parts: list[Futures]) -> Futures:
    """Concatenate per-item futures, padding the agent axis to the largest count (padding is invalid)."""
    n = max(p.agent_xy.shape[1] for p in parts)

    def pad(t: Tensor) -> Tensor:
        extra = n - t.shape[1]
        return torch.cat((t, torch.zeros((t.shape[0], extra, *t.shape[2:]), dtype=t.dtype)), dim=1) if extra else t

    fields = ("agent_xy", "agent_heading", "agent_size", "agent_valid")
    padded = {name: torch.cat([pad(getattr(p, name)) for p in parts]) for name in fields}
    return Futures(ego_xy=torch.cat([p.ego_xy for p in parts]), **padded)


def drives_folder(cfg: EndToEndConfig, raster: RasterConfig, timing: Timing) -> Path:
    """The folder of expert drive logs the job trains on: `cfg.logs`, else `<out>/drives`, recorded now at the
    stack's `raster` and `timing` (by rank 0; the others wait) unless a resumed job finds its recording done:
    the logs are written atomically and the index after them, so an index means every drive is there."""
    if cfg.logs is not None:
        return Path(cfg.logs)
    folder = Path(cfg.out) / DRIVES
    expert = policy_at_raster(cfg.expert, raster)
    rank, world = process_group()
    if rank == 0 and not (folder / INDEX_FILE).is_file():
        record_suite(cfg.suite, cfg.seeds, expert, folder, raster, foxglove=False, timing=timing)
        build_index(folder)
    barrier(world)
    check_recording(build_index(folder, save=False), cfg, getattr(expert, "name", type(expert).__name__))
    return folder


def check_recording(index: LogIndex, cfg: EndToEndConfig, expert: str) -> None:
    """Refuse a reused `<out>/drives` that another job recorded (another suite, seeds or `expert`, the policy
    name its logs carry: a job killed before its first checkpoint, started again with other settings) rather
    than train on its drives."""
    expected = {drive_name(s.name, seed) for s in resolve_suite(cfg.suite) for seed in cfg.seeds}
    found = {d.drive for d in index.drives} | {Path(name).stem for name in index.broken}
    experts = {d.metadata.get("policy") for d in index.drives}
    if found != expected or experts - {expert}:
        raise ValueError(
            f"logs {index.root}: not the drives of suite {cfg.suite!r} x seeds {list(cfg.seeds)} driven by "
            f"{expert!r} (missing {sorted(expected - found)[:3]}, others {sorted(found - expected)[:3]}, experts "
            f"{sorted(map(str, experts))}): another job recorded them; delete the folder or choose another --out"
        )


def expert_drives(folder: Path, raster: RasterConfig, timing: Timing) -> list[RecordedBatch]:
    """Every drive of `folder` as a `RecordedBatch` (B = 1), in the suite's order. Logs that cannot be read
    (at indexing, or damaged in a way only reading shows: a missing channel, dropped frames) are reported and
    skipped, so the job goes on with the others."""
    index = build_index(folder, save=process_group()[0] == 0)
    index.warn_broken()
    if not index.drives:
        raise LogError(f"log folder {folder}: no readable drive logs ({len(index.broken)} broken)")
    require_raster(index, index.drives, raster)
    recorded, damaged = read_each(index, index.drives, lambda entry: recorded_drive(index, entry, timing))
    if not recorded:
        raise LogError(f"log folder {folder}: every drive is damaged ({damaged})")
    return recorded


def train(cfg: EndToEndConfig, recorded: list[RecordedBatch] | None = None) -> Path:
    """Fine-tune and write `<out>/final.safetensors` (a stack checkpoint); returns its path. The expert drives
    are `recorded` when given (the fleet's end-to-end stage reads its own split of a log folder), else those
    of `drives_folder`."""
    # The job records the file it started from, so a resumed session compares paths, not None with a path.
    cfg = replace(cfg, weights=stack_weights(cfg.weights))
    start = cfg.weights
    stack = Stack.load(start, cfg.device).train()
    timing = stack.timing
    raster = stack.cfg.perception.detector.raster
    if recorded is None:
        recorded = expert_drives(drives_folder(cfg, raster, timing), raster, timing)
    table = ItemTable(recorded, cfg, timing)
    modules = nn.ModuleDict({"detector": stack.perception.detector, "predictor": stack.predictor})

    def loss_fn(index: Tensor, _augment: torch.Generator, _step: int) -> tuple[Tensor, dict[str, Tensor]]:
        frames, truth = table.batch(index)
        return planning_loss(stack, frames, truth, cfg)

    def finalize(steps: int, seconds: float) -> Path:
        return stack.save(Path(cfg.out) / "final.safetensors", fine_tuned_from=str(start), steps=steps,
                          train_seconds=seconds, job=KIND)  # fmt: skip

    trainer = Trainer(cfg, KIND, modules, torch.arange(len(table.items)), loss_fn, stack.cfg.to_dict(), finalize)
    return trainer.run()


@torch.no_grad()
def held_out_loss(weights: Path, recorded: list[RecordedBatch], cfg: EndToEndConfig, max_items: int = 32) -> dict:
    """The planning loss and its terms of the stack `weights` on up to `max_items` items of `recorded` (spread
    evenly over them), in batches of `cfg.batch_size`: the job's own objective measured on drives it did not see."""
    stack = Stack.load(stack_weights(weights), cfg.device).eval()
    table = ItemTable(recorded, cfg, stack.timing)
    chosen = torch.linspace(0, len(table.items) - 1, min(max_items, len(table.items))).round().long().unique()
    sums: dict[str, float] = {}
    for start in range(0, len(chosen), cfg.batch_size):
        index = chosen[start : start + cfg.batch_size]
        frames, truth = table.batch(index)
        _, report = planning_loss(stack, frames, truth, cfg)
        for name, value in report.items():
            sums[name] = sums.get(name, 0.0) + float(value) * len(index)
    return {**{name: total / len(chosen) for name, total in sums.items()}, "items": len(chosen)}


__all__ = ["EndToEndConfig", "expert_drives", "held_out_loss", "hindsight_collision", "planning_loss", "train"]
