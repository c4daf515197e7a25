"""The lane encoder and the lanes that windows, the API and the exported graph carry to it."""

from __future__ import annotations

import dataclasses
import io
import math
import warnings

import pytest
import torch

from perception.types import Tracks
from prediction import api, dynamics
from prediction.config import PredictorConfig
from prediction.inputs import tracks_from_positions
from prediction.lanes import heading_hint, lane_directions
from prediction.model import MapInput, Predictor
from prediction.train import rotate_windows
from prediction.types import Forecast
from prediction.windows import TrajectoryWindows, no_lanes
from tests.prediction.conftest import walking_windows

CFG = PredictorConfig.tiny(lanes=True, lane_radius=20.0, interaction_radius=10.0)
POINTS = 12


def lane(y: float, x0: float = -15.0, step: float = 3.0, backwards: bool = False) -> torch.Tensor:
    """[P, 2] a straight lane along x at `y`, `step` m between points, running +x (or -x)."""
    x = x0 + step * torch.arange(POINTS, dtype=torch.float32)
    points = torch.stack((x, torch.full_like(x, y)), dim=-1)
    return points.flip(0) if backwards else points


def with_lanes(windows: TrajectoryWindows, *lanes: torch.Tensor) -> TrajectoryWindows:
    """`windows` with the same `lanes` ([P, 2] each, all points valid) in every window."""
    S = windows.batch_size
    points = torch.stack(lanes)[None].expand(S, -1, -1, -1).contiguous()
    return dataclasses.replace(windows, lanes=points, lanes_valid=torch.ones(points.shape[:3], dtype=torch.bool))


def forecast(net: Predictor, windows: TrajectoryWindows) -> Forecast:
    obs_xy, obs_present = windows.observed()
    tracks = tracks_from_positions(obs_xy, obs_present, windows.dt, windows.class_probs, windows.size)
    with torch.no_grad():
        return net(tracks, MapInput.of_windows(windows))


def net(seed: int = 0) -> Predictor:
    torch.manual_seed(seed)
    return Predictor(CFG).eval()


@pytest.fixture()
def cars() -> TrajectoryWindows:
    return walking_windows(pedestrians=False)


def test_the_lanes_near_an_agent_change_its_forecast(cars):
    model = net()
    a = forecast(model, with_lanes(cars, lane(0.0), lane(3.5)))
    b = forecast(model, with_lanes(cars, lane(0.0), lane(3.5, backwards=True)))  # the same line, the other way
    valid = cars.valid
    assert not torch.allclose(a.means[valid], b.means[valid], atol=1e-4)


def test_missing_points_far_lanes_and_lane_order_have_no_influence(cars):
    model = net()
    base = forecast(model, with_lanes(cars, lane(0.0), lane(3.5)))
    far = forecast(model, with_lanes(cars, lane(0.0), lane(3.5), lane(200.0)))  # no point within 20 m of anyone
    swapped = forecast(model, with_lanes(cars, lane(3.5), lane(0.0)))
    hidden = with_lanes(cars, lane(0.0), lane(3.5), lane(-2.0, step=1.0))
    invalid = hidden.lanes_valid.clone()
    invalid[:, 2] = False  # a whole lane of missing points, right beside the agents
    masked = forecast(model, dataclasses.replace(hidden, lanes_valid=invalid))
    valid = cars.valid
    for other in (far, swapped, masked):
        torch.testing.assert_close(other.means[valid], base.means[valid], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(other.log_weights[valid], base.log_weights[valid], atol=1e-5, rtol=1e-5)


def test_no_lane_near_is_the_same_as_no_lanes_at_all(cars):
    model = net()
    none = forecast(model, dataclasses.replace(cars, **no_lanes(cars.batch_size)))
    far = forecast(model, with_lanes(cars, lane(200.0)))
    torch.testing.assert_close(far.means[cars.valid], none.means[cars.valid], atol=1e-5, rtol=1e-5)


def test_lane_directions_follow_the_points_order():
    points = torch.stack((lane(0.0), lane(3.5, backwards=True)))[None]
    valid = torch.ones(points.shape[:3], dtype=torch.bool)
    valid[0, 0, 5] = False  # a gap: its neighbours take the direction of their remaining segment
    d = lane_directions(points, valid)
    assert torch.allclose(d[0, 0, valid[0, 0]], torch.tensor([1.0, 0.0]).expand(POINTS - 1, 2))
    assert torch.allclose(d[0, 1], torch.tensor([-1.0, 0.0]).expand(POINTS, 2))


def test_a_lane_model_without_lanes_is_refused(cars):
    obs_xy, obs_present = cars.observed()
    with pytest.raises(ValueError, match="lanes"):
        net()(tracks_from_positions(obs_xy, obs_present, cars.dt, cars.class_probs, cars.size))


def test_the_api_reads_lanes_and_checks_them(cars):
    wrapped = api.TrajectoryPredictor(net())
    windows = with_lanes(cars, lane(0.0), lane(3.5))
    obs_xy, obs_valid = windows.observed()
    agents = {"class_probs": windows.class_probs, "size": windows.size}
    direct = forecast(wrapped.model, windows)
    through = wrapped.forecast(obs_xy, obs_valid, **agents, lanes=windows.lanes, lanes_valid=windows.lanes_valid)
    torch.testing.assert_close(through.means, direct.means)
    samples = wrapped.predict_positions(obs_xy, obs_valid, 4, **agents, lanes=windows.lanes,
                                        lanes_valid=windows.lanes_valid)  # fmt: skip
    assert samples.shape[2] == 4 and bool(torch.isfinite(samples).all())
    wrapped.forecast(obs_xy, obs_valid, **agents)  # no lanes: forecast as if none were near
    with pytest.raises(ValueError, match="lanes_valid"):
        wrapped.forecast(obs_xy, obs_valid, lanes=windows.lanes, lanes_valid=windows.lanes_valid[:, :1])
    with pytest.raises(ValueError, match="both or neither"):
        wrapped.forecast(obs_xy, obs_valid, lanes=windows.lanes)
    broken = windows.lanes.clone()
    broken[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        wrapped.forecast(obs_xy, obs_valid, lanes=broken, lanes_valid=windows.lanes_valid)


def test_rotation_turns_the_lanes_with_the_agents(cars):
    windows = with_lanes(cars, lane(0.0), lane(3.5))
    rotated = rotate_windows(windows, torch.full((windows.batch_size,), torch.pi / 2))
    assert torch.allclose(rotated.lanes[..., 0], -windows.lanes[..., 1], atol=1e-5)
    assert torch.allclose(rotated.lanes[..., 1], windows.lanes[..., 0], atol=1e-5)


def test_windows_with_and_without_lanes_concatenate(cars):
    mapped = with_lanes(cars, lane(0.0), lane(3.5))
    plain = dataclasses.replace(walking_windows(windows=2), **no_lanes(2))
    both = TrajectoryWindows.concat([plain, mapped]).validate()
    assert both.lanes.shape == (2 + cars.batch_size, 2, POINTS, 2)
    assert not bool(both.lanes_valid[:2].any()) and torch.equal(both.lanes[2:], mapped.lanes)


def test_a_lane_model_exports_to_onnx_with_dynamic_scene_agent_and_lane_axes(cars):
    model = net()
    names = [*Tracks.flat_names(), "lanes", "lanes_valid"]

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
            named = dict(zip(names, flat, strict=True))
            map_input = MapInput(lanes=named["lanes"], lanes_valid=named["lanes_valid"])
            return tuple(self.net(Tracks.from_flat(named), map_input).to_flat().values())

    def flat(windows: TrajectoryWindows) -> tuple[torch.Tensor, ...]:
        obs_xy, obs_present = windows.observed()
        tracks = tracks_from_positions(obs_xy, obs_present, windows.dt, windows.class_probs, windows.size)
        return (*tracks.to_flat().values(), windows.lanes, windows.lanes_valid)

    axes = {name: {0: "S", 1: "A"} for name in Tracks.flat_names()}
    axes.update({"lanes": {0: "S", 1: "N"}, "lanes_valid": {0: "S", 1: "N"}})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Graph(), flat(with_lanes(cars, lane(0.0), lane(3.5))), buffer, input_names=names,
                          dynamo=False, output_names=Forecast.flat_names(), dynamic_axes=axes,
                          opset_version=17)  # fmt: skip
    import onnxruntime as ort  # only the export tests need it

    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    other = flat(with_lanes(walking_windows(windows=2, agents=7, seed=4, pedestrians=False), lane(-3.5), lane(0.0),
                            lane(3.5, backwards=True)))  # fmt: skip
    got = session.run(None, {name: value.numpy() for name, value in zip(names, other, strict=True)})
    with torch.no_grad():
        want = Graph()(*other)
    for name, a, b in zip(Forecast.flat_names(), got, want, strict=True):
        torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-4, rtol=1e-4, msg=name)


def test_a_standing_vehicle_heads_along_its_lane_and_a_moving_one_along_its_motion():
    position = torch.tensor([[[10.0, 0.5], [10.0, 40.0], [10.0, 0.5], [10.0, 0.5]]])
    velocity = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [0.0, 2.0], [0.0, 8.0]]])  # the last two drive across it
    lanes = lane(0.0, backwards=True)[None, None]
    hint = heading_hint(position, velocity, lanes, torch.ones(1, 1, POINTS, dtype=torch.bool))[0]
    assert hint[0, 0] < -0.8 and abs(float(hint[0, 1])) < 1e-6  # 1.1 m from a lane point: along it (-x)
    assert float(hint[1].norm()) < 1e-6  # 40 m away: nothing
    zero = torch.zeros(4, 2)
    cov = torch.eye(2).expand(4, 2, 2) * 0.01
    state, state_cov = dynamics.unicycle_state(zero, cov, velocity[0], cov, hint)
    assert abs(abs(float(state[0, dynamics.HEADING])) - torch.pi) < 1e-5 and float(state[0, dynamics.SPEED]) == 0.0
    assert float(state_cov[0, 2, 2]) < 0.1 * float(state_cov[1, 2, 2])  # the lane firms a standing heading
    across = state[2:, dynamics.HEADING] - torch.pi / 2  # moving: the motion decides, the lane barely bends it
    assert float(across[0].abs()) < math.radians(4.0) and float(across[1].abs()) < 1e-6


def test_masked_lane_points_may_hold_anything_without_poisoning_gradients(cars):
    windows = with_lanes(cars, lane(0.0), lane(3.5))
    lanes, valid = windows.lanes.clone(), windows.lanes_valid.clone()
    lanes[:, 1, -3:] = float("nan")
    valid[:, 1, -3:] = False
    model = Predictor(CFG)
    obs_xy, obs_present = windows.observed()
    tracks = tracks_from_positions(obs_xy, obs_present, windows.dt, windows.class_probs, windows.size)
    out = model(tracks, MapInput(lanes=lanes, lanes_valid=valid))
    out.means[windows.valid].sum().backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)


def test_trimming_drops_the_lane_slots_no_window_uses(cars):
    windows = with_lanes(cars, lane(0.0), lane(3.5), lane(7.0))
    unused = windows.lanes_valid.clone()
    unused[:, 1:] = False
    unused[0, 1] = True  # one window uses the second slot
    trimmed = dataclasses.replace(windows, lanes_valid=unused).trimmed().validate()
    assert trimmed.lanes.shape[1] == 2 and torch.equal(trimmed.lanes_valid, unused[:, :2])
