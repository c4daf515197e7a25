"""The public inference API: observed positions in, sampled futures or a `Forecast` out.

Outside evaluation code needs nothing else:

    from prediction import api
    model = api.load("weights/ethucy/eth.safetensors")       # or api.baseline("cv"), api.baseline("cv-sampled")
    samples = model.predict_positions(obs_xy, obs_valid, num_samples=20, seed=0)  # [S, A, 20, 12, 2]
    forecast = model.forecast(obs_xy, obs_valid)              # the full Gaussian mixture

`obs_xy [S, A, 8, 2]` holds the observed positions (m, any fixed world frame)
of every agent of S scene windows, `obs_valid [S, A, 8]` which of them were
observed; the last step is now. Every agent observed now is predicted (the
others get zeros). Velocities are backward differences of the positions, so
nothing depends on the future. Agents are pedestrians unless `class_probs
[S, A, 3]` (vehicle, pedestrian, cyclist) says otherwise; `size [S, A, 2]`
gives their boxes (m), as simulator and drive-log windows record them, and
`lanes [S, N, P, 2]` with `lanes_valid [S, N, P]` the lane centrelines near
them in the same frame (`SensorFrame.lanes`), read by a model trained with
lanes (without them such a model forecasts as if no lane were near):

    forecast = model.forecast(obs_xy, obs_valid, class_probs=windows.class_probs, size=windows.size,
                              lanes=windows.lanes, lanes_valid=windows.lanes_valid)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from prediction.baselines import ConstantVelocity, ConstantVelocitySampled
from prediction.checkpoint import load_predictor
from prediction.inputs import check_lanes, check_observations, tracks_from_positions
from prediction.model import MapInput, Predictor, SampleNoise
from prediction.types import Forecast
from prediction.windows import no_lanes

DEFAULT_POSITION_STD = 0.05  # m, when a model file does not record the one it was trained with
BASELINES = {"cv": ConstantVelocity, "cv-sampled": ConstantVelocitySampled}


class TrajectoryPredictor:
    """A trained `Predictor` behind the position-in, positions-out interface (see the module docstring)."""

    def __init__(self, model: Predictor, position_std: float = DEFAULT_POSITION_STD, chunk: int = 64):
        self.model = model.eval()
        self.position_std = position_std
        self.chunk = chunk  # windows per forward pass: bounds memory on large test sets

    @property
    def history(self) -> int:
        return self.model.cfg.history

    @property
    def horizon(self) -> int:
        return self.model.cfg.horizon

    @property
    def dt(self) -> float:
        return self.model.cfg.dt

    def _tracks(self, obs_xy: Tensor, obs_valid: Tensor, class_probs: Tensor | None, size: Tensor | None):
        device = next(self.model.parameters()).device
        xy, valid = obs_xy.to(device=device, dtype=torch.float32), obs_valid.to(device)
        move = lambda t: None if t is None else t.to(device=device, dtype=torch.float32)  # noqa: E731
        return tracks_from_positions(xy, valid, self.dt, move(class_probs), move(size), position_std=self.position_std)

    @torch.inference_mode()
    def predict_positions(
        self, obs_xy: Tensor, obs_valid: Tensor, num_samples: int = 20, seed: int = 0, *,
        class_probs: Tensor | None = None, size: Tensor | None = None, lanes: Tensor | None = None,
        lanes_valid: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """[S, A, num_samples, horizon, 2] sampled futures, m, the frame of `obs_xy` (on its device).

        Deterministic for a given `seed`: the noise comes from one `torch.Generator`
        drawn window chunk by window chunk in order.
        """
        check_observations(obs_xy, obs_valid, self.history)
        if not (isinstance(num_samples, int) and num_samples >= 1):
            raise ValueError(f"num_samples: expected an int >= 1, got {num_samples!r}")
        S, A = obs_valid.shape[:2]
        if lanes is not None and lanes_valid is not None:
            check_lanes(lanes, lanes_valid, S)  # whole, before the chunks slice it
        generator = torch.Generator().manual_seed(seed)
        parts = []
        for start in range(0, S, self.chunk):  # chunks of windows, not agents: each pass is batched over agents
            stop = min(S, start + self.chunk)
            rows = slice(start, stop)
            tracks = self._tracks(obs_xy[rows], obs_valid[rows], _rows(class_probs, rows), _rows(size, rows))
            lanes_in = self._lanes(_rows(lanes, rows), _rows(lanes_valid, rows), stop - start)
            noise = SampleNoise.draw(stop - start, A, num_samples, self.horizon, generator)
            paths = self.model.sample_positions(tracks, noise.to(tracks.device), lanes_in)
            parts.append(torch.where(tracks.valid[:, :, None, None, None], paths, torch.zeros_like(paths)))
        return torch.cat(parts).to(obs_xy.device)

    @torch.inference_mode()
    def forecast(
        self, obs_xy: Tensor, obs_valid: Tensor, *, class_probs: Tensor | None = None, size: Tensor | None = None,
        lanes: Tensor | None = None, lanes_valid: Tensor | None = None,
    ) -> Forecast:  # fmt: skip
        """The full K-mode Gaussian mixture of every agent (no sampling), frame of `obs_xy`."""
        check_observations(obs_xy, obs_valid, self.history)
        tracks = self._tracks(obs_xy, obs_valid, class_probs, size)
        return self.model(tracks, self._lanes(lanes, lanes_valid, int(obs_valid.shape[0])))

    def _lanes(self, lanes: Tensor | None, lanes_valid: Tensor | None, windows: int) -> MapInput:
        """The lanes as the model reads them; none near (one empty slot per window) when not given."""
        device = next(self.model.parameters()).device
        if (lanes is None) != (lanes_valid is None):
            raise ValueError("lanes, lanes_valid: expected both or neither")
        if lanes is None:
            return MapInput(**no_lanes(windows, device))
        check_lanes(lanes, lanes_valid, windows)
        return MapInput(lanes=lanes.to(device=device, dtype=torch.float32), lanes_valid=lanes_valid.to(device))


def _rows(t: Tensor | None, rows: slice) -> Tensor | None:
    return None if t is None else t[rows]


def load(path: str | Path, device: torch.device | str = "cpu") -> TrajectoryPredictor:
    """A trained predictor from its model file (`drivestack prediction train` writes them)."""
    model, meta = load_predictor(path, device)
    job = meta.get("job") or {}
    return TrajectoryPredictor(model, float(job.get("position_std", DEFAULT_POSITION_STD)))


def baseline(name: str, **options: float) -> ConstantVelocity:
    """A constant-velocity baseline with the same interface: "cv" (deterministic) or "cv-sampled"
    (Schoeller et al. 2020's CVM-S: each sample's heading rotated by a Gaussian angle)."""
    if name not in BASELINES:
        raise ValueError(f"baseline: expected one of {sorted(BASELINES)}, got {name!r}")
    return BASELINES[name](**options)
