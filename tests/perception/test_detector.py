"""Detector, FrameStack and decode: shapes, valid contracts, gradients, past-only input, export."""

from __future__ import annotations

import dataclasses
import io
import math
import warnings

import pytest
import torch
from torch import Tensor, nn

from core.config import ConfigError
from perception.config import DetectorConfig
from perception.decode import decode, dense_candidates
from perception.detector import Detector, parameter_count
from perception.frames import FrameStack, detector_input, initial_stack, push
from perception.heads import HEAD_LAYOUT, DenseOutput
from perception.types import Detections
from sim.config import RasterConfig
from sim.sensors import cell_centres
from sim.types import SensorFrame

CFG = DetectorConfig.tiny()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny convolutions on a shared 2-core machine: OpenMP threads only contend.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _detector(cfg: DetectorConfig = CFG) -> Detector:
    torch.manual_seed(0)
    return Detector(cfg)


def _input(cfg: DetectorConfig = CFG, batch: int = 2) -> Tensor:
    return torch.rand(
        batch, cfg.in_channels, cfg.raster.size, cfg.raster.size, generator=torch.Generator().manual_seed(1)
    )


def _block_bev(raster: RasterConfig, pose: tuple[float, float, float], centre: tuple[float, float]) -> Tensor:
    """[1, 2, H, W] BEV of a static 4 m x 2 m world-aligned block seen from world `pose`."""
    ahead, left = cell_centres(raster, torch.float64, torch.device("cpu"))  # (H,), (W,)
    x, y = ahead.reshape(-1, 1), left.reshape(1, -1)
    c, s = math.cos(pose[2]), math.sin(pose[2])
    wx, wy = pose[0] + c * x - s * y, pose[1] + s * x + c * y  # (H, W) world
    block = ((wx - centre[0]).abs() < 2.0) & ((wy - centre[1]).abs() < 1.0)
    return torch.stack((block.float(), 1.5 * block.float())).unsqueeze(0)


def _frame(bev: Tensor, pose: tuple[float, float, float], time: float = 0.0) -> SensorFrame:
    B, _, H, W = bev.shape
    zeros = torch.zeros(B)
    return SensorFrame(
        bev=bev,
        map=torch.full((B, 3, H, W), 0.5),
        ego_speed=zeros,
        ego_accel=zeros,
        ego_yaw_rate=zeros,
        ego_pose=torch.tensor([pose], dtype=torch.float32).expand(B, 3),
        route=torch.zeros(B, 2, 2),
        route_valid=torch.ones(B, 2, dtype=torch.bool),
        lanes=torch.zeros(B, 1, 2, 2),
        lanes_valid=torch.zeros(B, 1, 2, dtype=torch.bool),
        speed_limit=zeros + 10.0,
        time=zeros + time,
    )


def _centroid(occupancy: Tensor) -> Tensor:
    rows, cols = torch.meshgrid(torch.arange(occupancy.shape[0]), torch.arange(occupancy.shape[1]), indexing="ij")
    mass = occupancy.sum()
    return torch.stack(((rows * occupancy).sum() / mass, (cols * occupancy).sum() / mass))


def test_dense_output_features_and_embedding_shapes():
    det = _detector()
    x = _input()
    out = det(x).validate()
    G = CFG.grid_size
    assert out.grid_size == G == 8
    layout = dict(HEAD_LAYOUT)
    for name in DenseOutput.field_names():
        expected = (2, G, G) if layout[name] == 1 else (2, layout[name], G, G)
        assert tuple(getattr(out, name).shape) == expected, name
    assert det.features(x).shape == (2, det.feature_channels, G, G)
    assert det.embed(x).shape == (2, det.embed_dim)
    both = det.outputs(x)
    torch.testing.assert_close(both.dense.offset, out.offset)
    torch.testing.assert_close(both.embedding, det.embed(x))


def test_wrong_input_shape_names_what_was_expected():
    with pytest.raises(ValueError, match=r"expected shape \[B, 9, 32, 32\]"):
        _detector()(torch.zeros(1, 7, 32, 32))


def test_default_detector_is_small():
    assert parameter_count(Detector(DetectorConfig())) < 1_500_000


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"stride": 3}, "stride"),
        ({"slots": 65}, "slots"),
        ({"neck_width": 12}, "neck_width"),
        ({"frames": 0}, "frames"),
    ],
)
def test_config_errors_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=f"DetectorConfig.{field}"):
        DetectorConfig.tiny(**changes)


def test_decode_on_random_weights_validates_and_ranks_by_existence():
    out = _detector()(_input())
    detections = decode(out, CFG.raster, CFG.stride, CFG.slots, temperature=2.0).validate()
    assert detections.valid.all() and detections.num_slots == CFG.slots
    assert (detections.existence[:, :-1] >= detections.existence[:, 1:]).all()
    candidates = dense_candidates(out, CFG.raster, CFG.stride, temperature=2.0).validate()
    best = candidates.existence.max(dim=1).values
    torch.testing.assert_close(detections.existence[:, 0], best)
    assert (torch.linalg.eigvalsh(candidates.position_cov) >= 0.05**2 * 0.99).all()


def test_decode_keeps_the_top_slots_when_there_are_more_objects_than_slots():
    G, N = CFG.grid_size, 32
    out = _detector()(_input(batch=1))
    logit = torch.full((1, G * G), -8.0)
    objects = torch.randperm(G * G, generator=torch.Generator().manual_seed(3))[:40]
    logit[0, objects] = torch.linspace(6.0, 2.0, 40)
    out = dataclasses.replace(out, existence_logit=logit.reshape(1, G, G))
    detections = decode(out, CFG.raster, CFG.stride, N).validate()
    kept = dense_candidates(out, CFG.raster, CFG.stride).position[0, objects[:N]]
    torch.testing.assert_close(detections.position[0], kept)
    assert (detections.existence > 0.5).all()


def test_gradients_reach_the_first_conv_from_existence_and_position():
    det = _detector()
    first_conv = det.backbone.stages[0][0][0]
    for read in (lambda c: c.existence.sum(), lambda c: c.position.sum()):
        det.zero_grad()
        read(dense_candidates(det(_input()), CFG.raster, CFG.stride)).backward()
        assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


def test_framestack_keeps_a_static_object_put_while_the_ego_moves():
    raster = RasterConfig(size=48, resolution=0.5)
    poses = [(0.0, 0.0, 0.0), (3.0, 0.0, 0.0), (5.0, 1.5, 0.3)]
    centre = (10.0, 1.0)
    stack = initial_stack(_frame(_block_bev(raster, poses[0], centre), poses[0]), 3)
    for pose in poses[1:]:
        stack = push(stack, _frame(_block_bev(raster, pose, centre), pose))
    for mode in ("nearest", "bilinear"):
        x = detector_input(stack.validate(), raster, mode)
        assert x.shape == (1, 2 * 3 + 3, 48, 48)
        current = x[0, 4]
        torch.testing.assert_close(current, _block_bev(raster, poses[-1], centre)[0, 0])
        for past in (x[0, 0], x[0, 2]):
            assert (_centroid(past) - _centroid(current)).abs().max() < 0.5  # cells
            assert abs(float(past.sum() - current.sum())) <= 0.15 * float(current.sum())
        torch.testing.assert_close(x[0, 6:], stack.map[0])


def test_framestack_input_uses_only_the_past():
    raster = RasterConfig(size=32, resolution=1.0)
    gen = torch.Generator().manual_seed(4)
    frames = [_frame(torch.rand(2, 2, 32, 32, generator=gen), (0.7 * t, 0.1 * t, 0.05 * t), 0.1 * t) for t in range(6)]
    changed = list(frames[:3]) + [_frame(f.bev.flip(-1) + 1.0, (9.0, -3.0, 1.0), f.time[0].item()) for f in frames[3:]]

    def inputs(sequence: list[SensorFrame]) -> list[Tensor]:
        stack: FrameStack | None = None
        out = []
        for frame in sequence:
            stack = initial_stack(frame, 3) if stack is None else push(stack, frame)
            out.append(detector_input(stack, raster))
        return out

    original, altered = inputs(frames), inputs(changed)
    for t in range(3):
        torch.testing.assert_close(original[t], altered[t], rtol=0, atol=0)
    assert not torch.equal(original[3], altered[3])


def test_detector_with_framestack_and_decode_exports_to_onnx_with_dynamic_batch():
    cfg = CFG

    class Graph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.detector = _detector(cfg).eval()

        def forward(self, bev: Tensor, pose: Tensor, map_: Tensor) -> tuple[Tensor, ...]:
            x = detector_input(FrameStack(bev=bev, pose=pose, map=map_), cfg.raster)
            out = decode(self.detector(x), cfg.raster, cfg.stride, cfg.slots)
            return tuple(out.to_flat().values())

    gen = torch.Generator().manual_seed(5)
    H, K = cfg.raster.size, cfg.frames

    def inputs(batch: int) -> tuple[Tensor, Tensor, Tensor]:
        pose = torch.rand(batch, K, 3, generator=gen) * torch.tensor([3.0, 1.0, 0.2])
        return torch.rand(batch, K, 2, H, H, generator=gen), pose, torch.rand(batch, 3, H, H, generator=gen)

    graph, buffer = Graph(), io.BytesIO()
    names = ["bev", "pose", "map"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            inputs(2),
            buffer,
            input_names=names,
            output_names=Detections.flat_names(),
            dynamic_axes={name: {0: "B"} for name in names},
            dynamo=False,
            opset_version=17,
        )
    import onnxruntime as ort  # only this test needs it

    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    batch3 = inputs(3)
    got = session.run(None, {name: value.numpy() for name, value in zip(names, batch3, strict=True)})
    with torch.no_grad():
        want = graph(*batch3)
    for name, a, b in zip(Detections.flat_names(), got, want, strict=True):
        torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-4, rtol=1e-4, msg=name)
