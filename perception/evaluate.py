"""`evaluate(cfg)`: calibrate a detector (existence temperature, position-covariance scale) and
measure it on held-out frames.

The dataset's episodes are split (`split_by_episode`) into a validation part,
on which the existence temperature is fitted (`fit_temperature` on the
decoded slots' existence logits against `existence_outcomes`) and the
position-covariance scale (`fit_covariance_scale` on the squared Mahalanobis
distances of the matched slots), and a test part, on which `DetectionEvaluator` measures mAP per class and threshold,
calibration (ECE), position NLL and 1/2-sigma coverage, and false positives
per frame with both calibrations applied, and, when the dataset recorded the object
sensor's ghosts, how much existence the detector puts near them. The calibrated model is written as a new
checkpoint (`calibrated.safetensors`, both in its config) and the
report as `report.json`, both atomically; the source checkpoint is untouched.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.config import ConfigError
from core.io import write_json
from perception.calibration import expected_calibration_error, fit_covariance_scale, fit_temperature
from perception.config import DetectorConfig
from perception.data import ghosts_of, labels_of, split_by_episode
from perception.decode import decode, scale_position_covariance
from perception.jobs.common import STORED_HALF, open_logs
from perception.jobs.loader import load_batch
from perception.logdata import LogFrameDataset
from perception.metrics import (
    DetectionEvaluator,
    EvaluationConfig,
    existence_outcomes,
    mahalanobis_squared,
    match_frames,
)
from perception.model import Perception
from perception.types import CLASS_NAMES, Detections
from sim.drivelogs.format import GHOSTS_TOPIC
from sim.types import ObjectList

CALIBRATED_NAME = "calibrated.safetensors"
REPORT_NAME = "report.json"


@dataclass(frozen=True)
class EvaluateConfig:
    """What to evaluate and where the results go.

    Attributes:
        checkpoint: any perception checkpoint (`final.safetensors`, a `step-*` file, a calibrated one).
        data: held-out folder of drive logs (scenario seeds not trained on), at the detector's raster.
        out: directory for `calibrated.safetensors` and `report.json`.
        val_fraction: fraction of `data`'s episodes used for calibration; the rest are measured.
        fit_temperature: fit the temperature and the position-covariance scale on `val_fraction` of the
            episodes (True), or keep the checkpoint's own and measure every frame (False: a calibrated
            checkpoint measured on another scenario, e.g. one with no real objects, on which a fitted
            calibration would be degenerate).
        seed: the episode split's seed.
        batch_size: frames per detector call.
        device: torch device.
        evaluation: matching thresholds and report settings.
        every: one frame in `every` is measured (steps 0, every, 2 every, ... of each drive).
        max_objects: M, label slots per frame.
    """

    checkpoint: Path = Path("runs/perception/finetune/final.safetensors")
    data: Path = Path("data/drives-test")
    out: Path = Path("runs/perception/eval")
    val_fraction: float = 0.5
    fit_temperature: bool = True
    seed: int = 0
    batch_size: int = 32
    device: str = "cpu"
    evaluation: EvaluationConfig = EvaluationConfig()
    every: int = 5
    max_objects: int = 64

    def __post_init__(self) -> None:
        for name in ("every", "max_objects"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ConfigError(f"EvaluateConfig.{name}: expected an int >= 1, got {getattr(self, name)!r}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"EvaluateConfig.val_fraction: expected in (0, 1), got {self.val_fraction!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ConfigError(f"EvaluateConfig.batch_size: expected an int >= 1, got {self.batch_size!r}")


@dataclass(frozen=True)
class SplitOutputs:
    """Decoded detections of one split, uncalibrated (temperature 1, covariance scale 1), with their raw
    existence logits.

    Attributes:
        logits: one [B, N] tensor per batch, the existence logit of each slot.
        detections: one per batch, uncalibrated.
        labels: one ground-truth `ObjectList` per batch.
        ghosts: one per batch, the object sensor's ghosts, or None when the dataset has none.
    """

    logits: list[Tensor]
    detections: list[Detections]
    labels: list[ObjectList]
    ghosts: list[ObjectList | None]

    def calibrated(self, temperature: float, position_cov_scale: float = 1.0) -> list[Detections]:
        """The detections with existence `sigmoid(logit / temperature)` (decode's order does not change)
        and position covariances times `position_cov_scale`."""
        return [
            scale_position_covariance(
                dataclasses.replace(d, existence=torch.sigmoid(z / temperature)), position_cov_scale
            )
            for d, z in zip(self.detections, self.logits, strict=True)
        ]

    def matched_mahalanobis_sq(self, config: EvaluationConfig) -> Tensor:
        """(P,) squared Mahalanobis distance of every matched slot's ground-truth position (class-agnostic
        match at `outcome_threshold`, as the evaluator's position metrics)."""
        distances = []
        for d, gt in zip(self.detections, self.labels, strict=True):
            matched = match_frames(d, gt, config).matched_gt  # (B, N), -1 = unmatched
            frame, slot = (matched >= 0).nonzero(as_tuple=True)
            target = gt.xy[frame, matched[frame, slot]].double()
            distances.append(
                mahalanobis_squared(target, d.position[frame, slot].double(), d.position_cov[frame, slot].double())
            )
        return torch.cat(distances)

    def outcomes(self, config: EvaluationConfig) -> list[Tensor]:
        return [existence_outcomes(d, gt, config) for d, gt in zip(self.detections, self.labels, strict=True)]


@torch.no_grad()
def run_detector(
    model: Perception, dataset: LogFrameDataset, index: Tensor, batch_size: int, device: str
) -> SplitOutputs:
    """Detections and existence logits for the frames `index` of `dataset` (temperature 1)."""
    det = model.cfg.detector
    model.eval()
    logits, detections, labels, ghosts = [], [], [], []
    for start in range(0, len(index), batch_size):
        batch = load_batch(dataset, index[start : start + batch_size], device)
        dense = model.detector(batch["input"])
        raw = dense.existence_logit.flatten(1)  # (B, G G)
        logits.append(torch.topk(raw, det.slots, dim=1).values)  # (B, N) decode's slot order
        detections.append(decode(dense, det.raster, det.stride, det.slots, temperature=1.0))
        labels.append(labels_of(batch))
        ghosts.append(ghosts_of(batch))
    return SplitOutputs(logits, detections, labels, ghosts)


def _ece(detections: list[Detections], outcomes: list[Tensor], bins: int) -> float:
    probs = torch.cat([d.existence[d.valid] for d in detections])
    hits = torch.cat([o[d.valid] for d, o in zip(detections, outcomes, strict=True)])
    return expected_calibration_error(probs, hits, bins)


def _splits(dataset: LogFrameDataset, cfg: EvaluateConfig) -> tuple[Tensor, Tensor]:
    val, test = split_by_episode(dataset, cfg.val_fraction, cfg.seed)
    episodes = len(torch.unique(dataset.episode))
    if len(val) == 0 or len(test) == 0:
        raise ValueError(
            f"evaluate: val_fraction={cfg.val_fraction} of {episodes} episodes leaves an empty "
            "validation or test split; use a dataset with more episodes (seeds)"
        )
    return val, test


def _fit_calibration(val: SplitOutputs, cfg: EvaluateConfig, current_scale: float) -> dict[str, Any]:
    """The temperature and position-covariance scale fitted on the validation split, and that split's
    ECE before and after. With no matched detection to fit the scale on, `current_scale` is kept."""
    outcomes, bins = val.outcomes(cfg.evaluation), cfg.evaluation.calibration_bins
    temperature = fit_temperature(
        torch.cat([z.flatten() for z in val.logits]), torch.cat([o.flatten() for o in outcomes])
    )
    distances = val.matched_mahalanobis_sq(cfg.evaluation)
    return {
        "temperature": temperature,
        "position_cov_scale": fit_covariance_scale(distances) if distances.numel() else current_scale,
        "position_cov_scale_fitted_on": int(distances.numel()),
        "val_ece_before": _ece(val.detections, outcomes, bins),
        "val_ece_after": _ece(val.calibrated(temperature), outcomes, bins),
    }


def evaluation_frames(cfg: EvaluateConfig, det: DetectorConfig) -> LogFrameDataset:
    """Every `cfg.every`-th frame of the held-out drives with labels, and with the sensor's ghosts where every
    drive recorded them (logs recorded before they were are measured without the ghost statistics)."""
    index = open_logs(cfg.data)
    ghosts = all(GHOSTS_TOPIC in d.topics for d in index.drives)
    return LogFrameDataset(index, index.drives, det.frames, det.raster, det.warp_mode, labels=True,
                           max_objects=cfg.max_objects, every=cfg.every, stored_half=STORED_HALF,
                           ghosts=ghosts)  # fmt: skip


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    """Fit the calibration (unless `cfg.fit_temperature` is False), write the calibrated checkpoint and the
    report; returns the report."""
    model = Perception.load(cfg.checkpoint, cfg.device)
    dataset = evaluation_frames(cfg, model.cfg.detector)
    if cfg.fit_temperature:
        val_index, test_index = _splits(dataset, cfg)
        val = run_detector(model, dataset, val_index, cfg.batch_size, cfg.device)
        calibration = _fit_calibration(val, cfg, model.cfg.position_cov_scale)
    else:
        val_index, test_index = torch.zeros(0, dtype=torch.long), torch.arange(len(dataset))
        calibration = {
            "temperature": model.cfg.temperature,
            "position_cov_scale": model.cfg.position_cov_scale,
            "position_cov_scale_fitted_on": 0,
            "val_ece_before": None,
            "val_ece_after": None,
        }
    temperature, bins = calibration["temperature"], cfg.evaluation.calibration_bins
    test = run_detector(model, dataset, test_index, cfg.batch_size, cfg.device)
    test_outcomes = test.outcomes(cfg.evaluation)
    calibrated = test.calibrated(temperature, calibration["position_cov_scale"])
    calibration["test_ece_before"] = _ece(test.detections, test_outcomes, bins)
    calibration["test_ece_after"] = _ece(calibrated, test_outcomes, bins)

    evaluator = DetectionEvaluator(cfg.evaluation)
    for dets, gt, ghosts in zip(calibrated, test.labels, test.ghosts, strict=True):
        evaluator.update(dets, gt, ghosts=ghosts)
    out = Path(cfg.out)
    settings = {"temperature": temperature, "position_cov_scale": calibration["position_cov_scale"]}
    calibrated_model = Perception(dataclasses.replace(model.cfg, **settings)).to(cfg.device)
    calibrated_model.detector.load_state_dict(model.detector.state_dict())
    checkpoint = calibrated_model.save(out / CALIBRATED_NAME, calibrated_from=str(cfg.checkpoint), **calibration)
    report = {
        "checkpoint": str(cfg.checkpoint),
        "calibrated_checkpoint": str(checkpoint),
        "data": str(cfg.data),
        "frames": {"val": len(val_index), "test": len(test_index)},
        "calibration": calibration,
        "metrics": evaluator.compute(),
    }
    write_json(out / REPORT_NAME, report)
    return report


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of the headline numbers."""
    m, c = report["metrics"], report["calibration"]
    fp = m["false_positives"]
    rows = [("mAP", m["mAP"])]
    rows += [(f"AP {name}", m["ap_per_class"][name]) for name in CLASS_NAMES]
    rows += [
        ("temperature", c["temperature"]),
        ("position covariance scale", c["position_cov_scale"]),
        ("ECE before (test)", c["test_ece_before"]),
        ("ECE after (test)", c["test_ece_after"]),
        ("position NLL", m["position"]["nll_mean"]),
        (f"1-sigma coverage (ideal {m['position']['expected_1sigma']:.2f})", m["position"]["coverage_1sigma"]),
        (f"2-sigma coverage (ideal {m['position']['expected_2sigma']:.2f})", m["position"]["coverage_2sigma"]),
        ("false positives / frame", fp["expected_per_frame"]),
        (f"false positives / frame > {fp['probability']:g}", fp["above_probability_per_frame"]),
    ]
    ghosts = m["ghosts"] or {}  # None: the dataset did not record the sensor's ghosts
    rows += [
        ("sensor ghosts", ghosts.get("num_ghosts")),
        ("existence near a ghost (sum / ghost)", ghosts.get("existence_per_ghost")),
        ("peak existence near a ghost", ghosts.get("peak_existence_per_ghost")),
        ("mean existence of ghost-responding slots", ghosts.get("mean_existence_of_responding_slots")),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {_number(value)}" for name, value in rows)


def _number(value: float | None) -> str:
    return f"{value:10.4f}" if value is not None else f"{'n/a':>10}"


def main(cfg: EvaluateConfig) -> dict[str, Any]:
    report = evaluate(cfg)
    print(format_report(report))
    print(f"wrote {Path(cfg.out) / REPORT_NAME} and {Path(cfg.out) / CALIBRATED_NAME}")
    return report


__all__ = ["CALIBRATED_NAME", "REPORT_NAME", "EvaluateConfig", "evaluate", "format_report", "main"]
