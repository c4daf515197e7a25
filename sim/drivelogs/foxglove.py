"""The Foxglove channels of a drive log: what a person opens the drive in Foxglove to see.

Beside the tensor channels (`sim.drivelogs.format`), a drive log may carry channels in Foxglove's well-known
schemas (`foxglove-schemas-protobuf`): schema encoding `protobuf` (the schema record holds the message
type's FileDescriptorSet, dependencies included, so any protobuf reader decodes a message from the file
alone), message encoding `protobuf`. Foxglove's 3D panel draws them with no drivestack code.

Two frames: `world` (the simulator's world frame: x east, y north, m) and `ego` (the frame of every stack
tensor: origin at the ego's box centre on the ground, x forward, y left), a child of `world` through the
`/foxglove/tf` transforms. Every message is stamped with the sim time (s from the episode's start).

    channels = FoxgloveChannels(log, raster)              # log: a sim.drivelogs.format.DriveLogWriter
    channels.write_step(state, obs.frame, plan, b)        # one message per channel, episode b

`CHANNELS` lists the topics with their schemas (docs/fleet.md has the table). The conversions are small
functions of one episode's numpy arrays, each saying its frame and units. What the overlay does not
carry is not drawn: the policies' overlays hold the objects they believed in (not their tracks), forecast
modes with weights and candidates with weights (not the candidates' risk, nor sigma).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from foxglove_schemas_protobuf.Color_pb2 import Color
from foxglove_schemas_protobuf.CubePrimitive_pb2 import CubePrimitive
from foxglove_schemas_protobuf.FrameTransform_pb2 import FrameTransform
from foxglove_schemas_protobuf.Grid_pb2 import Grid
from foxglove_schemas_protobuf.KeyValuePair_pb2 import KeyValuePair
from foxglove_schemas_protobuf.LinePrimitive_pb2 import LinePrimitive
from foxglove_schemas_protobuf.PackedElementField_pb2 import PackedElementField
from foxglove_schemas_protobuf.Point3_pb2 import Point3
from foxglove_schemas_protobuf.Pose_pb2 import Pose
from foxglove_schemas_protobuf.Quaternion_pb2 import Quaternion
from foxglove_schemas_protobuf.SceneEntity_pb2 import SceneEntity
from foxglove_schemas_protobuf.SceneEntityDeletion_pb2 import SceneEntityDeletion
from foxglove_schemas_protobuf.SceneUpdate_pb2 import SceneUpdate
from foxglove_schemas_protobuf.TextPrimitive_pb2 import TextPrimitive
from foxglove_schemas_protobuf.Vector2_pb2 import Vector2
from foxglove_schemas_protobuf.Vector3_pb2 import Vector3
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from sim.config import RasterConfig
from sim.drawing import (
    BEV_COLOUR,
    DETECTION_COLOUR,
    EGO_COLOUR,
    KIND_COLOURS,
    KIND_NAMES,
    MIN_DRAWN_EXISTENCE,
    MIN_DRAWN_MODE_WEIGHT,
    PLAN_COLOUR,
    TRACK_COLOUR,
    bev_hits,
    candidate_colour,
    candidate_levels,
    chosen_candidate,
    map_image,
    mode_colour,
    plan_numbers,
)
from sim.drivelogs.format import DriveLogWriter
from sim.policies import PolicyOutput
from sim.sensors.raster import ego_origin_cell
from sim.state import WorldState
from sim.types import SensorFrame

SCHEMA_ENCODING = MESSAGE_ENCODING = "protobuf"
WORLD_FRAME, EGO_FRAME = "world", "ego"
EGO_HEIGHT_M = 1.5  # drawn height of the ego's box (`EgoState` has length and width, no height)
ELLIPSE_POINTS = 24  # points of a covariance ellipse's outline
LINE_QUANTUM_M = 2.0**-6  # drawn line points are rounded to multiples of this (1.6 cm), see `quantised`
# The plan's candidates (tens of lines a step, the channels' largest part) are rounded to 6 cm: still far below
# what a drawn alternative path shows, and it kept the shortest hard drive (occluded_pedestrian) within 1.5x
# its format-1 size once the logs carried the sensor's ghosts and the final state (1.53x at 1.6 cm).
CANDIDATE_QUANTUM_M = 2.0**-4
# Heights above the ground (m) that keep the layers from flickering into each other.
MAP_Z, BEV_Z, LINE_Z = -0.04, -0.02, 0.05

CHANNELS: dict[str, type[Message]] = {
    "/foxglove/tf": FrameTransform,  # world -> ego
    "/foxglove/truth": SceneUpdate,  # ground-truth agents (world) and the ego's box (ego)
    "/foxglove/detections": SceneUpdate,  # believed objects: 1- and 2-sigma ellipses, alpha = existence
    "/foxglove/tracks": SceneUpdate,  # the tracker's tracks, drawn the same way in their own colour
    "/foxglove/forecast": SceneUpdate,  # forecast modes, colour by mode, alpha and width by weight
    "/foxglove/plan": SceneUpdate,  # candidates coloured by risk (else weight), the chosen plan, key numbers
    "/foxglove/map": Grid,  # the map raster the policy saw (RGBA), every `RASTER_EVERY` steps
    "/foxglove/bev": Grid,  # the BEV raster's returns (RGBA), every `RASTER_EVERY` steps
}
RASTER_TOPICS = ("/foxglove/map", "/foxglove/bev")
# The grids go on every 2nd step (5 Hz at the 0.1 s sim step): a grid is stamped, so Foxglove draws it where
# the ego was when it was taken; writing them every step made a pdm-gt cut_in drive 1.57x its size without
# the Foxglove channels, against 1.47x at every 2nd step (measured with 64 kB chunks; the bound is 1.5x).
RASTER_EVERY = 2


def file_descriptor_set(message_type: type[Message]) -> bytes:
    """The serialized FileDescriptorSet of `message_type`'s file and every file it imports (dependencies
    first): the schema data a protobuf channel of MCAP carries."""
    files = FileDescriptorSet()
    seen: set[str] = set()

    def add(file: FileDescriptor) -> None:
        for dependency in file.dependencies:
            if dependency.name not in seen:
                seen.add(dependency.name)
                add(dependency)
        file.CopyToProto(files.file.add())

    add(message_type.DESCRIPTOR.file)
    return files.SerializeToString()


# --- small conversions: numpy in, protobuf out ------------------------------------------------------


def stamp(time_s: float) -> Timestamp:
    """A protobuf timestamp of `time_s` (s of sim time)."""
    nanos = int(round(time_s * 1e9))
    return Timestamp(seconds=nanos // 1_000_000_000, nanos=nanos % 1_000_000_000)


def yaw_quaternion(yaw: float) -> Quaternion:
    """The rotation by `yaw` (rad, counter-clockwise) about z."""
    return Quaternion(z=float(np.sin(yaw / 2)), w=float(np.cos(yaw / 2)))


def rgba(bgr: tuple[int, int, int], alpha: float = 1.0) -> Color:
    """A Foxglove colour (floats in [0, 1]) of a renderer BGR colour (`sim.render`) and an alpha."""
    # Rounded to multiples of 1/256: float64s with few mantissa bits, which the log compresses well.
    r, g, b, a = (round(v * 256) / 256 for v in (*(c / 255 for c in bgr[::-1]), float(np.clip(alpha, 0.0, 1.0))))
    return Color(r=r, g=g, b=b, a=a)


def ego_transform(pose: np.ndarray, time_s: float) -> FrameTransform:
    """world -> ego: `pose` is the ego frame's (x m, y m, yaw rad) in the world frame (`SensorFrame.ego_pose`,
    the ego's box centre)."""
    x, y, yaw = (float(v) for v in pose)
    return FrameTransform(timestamp=stamp(time_s), parent_frame_id=WORLD_FRAME, child_frame_id=EGO_FRAME,
                          translation=Vector3(x=x, y=y), rotation=yaw_quaternion(yaw))  # fmt: skip


def _metadata(**values: object) -> list[KeyValuePair]:
    return [KeyValuePair(key=k, value=str(v)) for k, v in values.items()]


def _cube(x: float, y: float, yaw: float, length: float, width: float, height: float, colour: Color) -> CubePrimitive:
    """A box standing on the ground, centred at (x, y) m of its entity's frame, heading `yaw` rad."""
    pose = Pose(position=Vector3(x=x, y=y, z=height / 2), orientation=yaw_quaternion(yaw))
    return CubePrimitive(pose=pose, size=Vector3(x=length, y=width, z=height), color=colour)


def truth_scene(agents: Mapping[str, np.ndarray], ego_size: tuple[float, float], time_s: float) -> SceneUpdate:
    """Ground-truth agents as boxes in the world frame, coloured by kind (`agents`: one episode's
    `AgentState` fields without the batch dimension: xy [N, 2] m, yaw [N] rad, length, width, height [N] m,
    kind, speed [N] m/s, valid), and the ego's box (`ego_size`: length, width, m) in the ego frame.
    Entities of the previous step are deleted first, so an agent that left the scene disappears."""
    t = stamp(time_s)
    entities = [
        SceneEntity(timestamp=t, frame_id=EGO_FRAME, id="ego", frame_locked=True,
                    cubes=[_cube(0.0, 0.0, 0.0, ego_size[0], ego_size[1], EGO_HEIGHT_M, rgba(EGO_COLOUR))])
    ]  # fmt: skip
    for n in np.flatnonzero(agents["valid"]):
        kind = int(agents["kind"][n])
        cube = _cube(*(float(v) for v in agents["xy"][n]), float(agents["yaw"][n]), float(agents["length"][n]),
                     float(agents["width"][n]), float(agents["height"][n]), rgba(KIND_COLOURS[kind], 0.9))  # fmt: skip
        meta = _metadata(slot=n, kind=KIND_NAMES[kind], speed_mps=f"{float(agents['speed'][n]):.2f}")
        entities.append(SceneEntity(timestamp=t, frame_id=WORLD_FRAME, id=f"agent-{n}", cubes=[cube], metadata=meta))
    return _replacing(entities, t)


def _replacing(entities: list[SceneEntity], t: Timestamp) -> SceneUpdate:
    """A scene update that deletes what the topic drew before `t`, then draws `entities`."""
    return SceneUpdate(deletions=[SceneEntityDeletion(timestamp=t, type=SceneEntityDeletion.ALL)], entities=entities)


def quantised(points: np.ndarray, quantum: float = LINE_QUANTUM_M) -> np.ndarray:
    """`points` (m) rounded to multiples of `quantum`: a drawing loses nothing visible, and the float64s of
    protobuf points then end in zero bits that the log's compression removes."""
    return np.round(np.asarray(points, np.float64) / quantum) * quantum


def _line(
    points: np.ndarray, colour: Color, thickness_px: float, loop: bool = False, quantum: float = LINE_QUANTUM_M
) -> LinePrimitive:
    """A line through ego-frame `points` [P, 2] (m), rounded to `quantum`, drawn `LINE_Z` above the ground,
    `thickness_px` pixels wide at any zoom."""
    kind = LinePrimitive.LINE_LOOP if loop else LinePrimitive.LINE_STRIP
    return LinePrimitive(type=kind, pose=Pose(position=Vector3(z=LINE_Z), orientation=Quaternion(w=1.0)),
                         thickness=thickness_px, scale_invariant=True, color=colour,
                         points=[Point3(x=x, y=y) for x, y in quantised(points, quantum).tolist()])  # fmt: skip


def ellipse_points(centre: np.ndarray, cov: np.ndarray, k: float, n: int = ELLIPSE_POINTS) -> np.ndarray:
    """`n` points [n, 2] (m) of the k-sigma ellipse of a position with covariance `cov` [2, 2] (m^2)
    around `centre` [2] (m), in the frame both are in."""
    values, vectors = np.linalg.eigh(cov)
    angle = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    unit = np.stack((np.cos(angle), np.sin(angle)), axis=-1)  # (n, 2)
    return centre + k * (unit * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def detection_scene(xy: np.ndarray, cov: np.ndarray | None, prob: np.ndarray, time_s: float,
                    colour: tuple[int, int, int] = DETECTION_COLOUR, name: str = "object") -> SceneUpdate:  # fmt: skip
    """The objects the policy believed in (or its tracks), ego frame: centres `xy` [M, 2] m, position
    covariances `cov` [M, 2, 2] m^2 as 1- and 2-sigma ellipses (a 0.5 m circle without), existence `prob` [M]
    as alpha. Objects below `MIN_DRAWN_EXISTENCE` are left out, as in the video."""
    t = stamp(time_s)
    entities = []
    for m in np.flatnonzero(prob >= MIN_DRAWN_EXISTENCE):
        shade = rgba(colour, 0.25 + 0.75 * float(prob[m]))
        shapes = (np.stack([ellipse_points(xy[m], cov[m], k) for k in (1.0, 2.0)]) if cov is not None
                  else ellipse_points(xy[m], 0.25 * np.eye(2), 1.0)[None])  # fmt: skip
        entities.append(SceneEntity(timestamp=t, frame_id=EGO_FRAME, id=f"{name}-{m}",
                                    lines=[_line(s, shade, 1.5, loop=True) for s in shapes],
                                    metadata=_metadata(slot=m, existence=f"{float(prob[m]):.3f}")))  # fmt: skip
    return _replacing(entities, t)


def forecast_scene(means: np.ndarray, weights: np.ndarray, time_s: float) -> SceneUpdate:
    """Forecast modes, ego frame: mode means `means` [A, K, T, 2] m as lines coloured by mode index
    (`sim.render.mode_colour`), alpha and width by the mode's weight `weights` [A, K]; modes at or below
    `MIN_DRAWN_MODE_WEIGHT` are left out, as in the video."""
    t = stamp(time_s)
    entities = []
    for a in range(means.shape[0]):
        drawn = [k for k in range(means.shape[1]) if weights[a, k] > MIN_DRAWN_MODE_WEIGHT]
        if not drawn:
            continue
        lines = [_line(means[a, k], rgba(mode_colour(k, float(weights[a, k])), 0.3 + 0.7 * float(weights[a, k])),
                       1.0 + 4.0 * float(weights[a, k])) for k in drawn]  # fmt: skip
        meta = _metadata(track=a, **{f"mode_{k + 1}": f"{float(weights[a, k]):.3f}" for k in drawn})
        entities.append(SceneEntity(timestamp=t, frame_id=EGO_FRAME, id=f"forecast-{a}", lines=lines, metadata=meta))
    return _replacing(entities, t)


def plan_scene(trajectory: np.ndarray, overlay: Mapping[str, np.ndarray], summary: str, time_s: float) -> SceneUpdate:
    """The plan, ego frame: the overlay's candidates [C, T, 2] m coloured by risk, or by weight without it
    (`sim.drawing.candidate_levels`: red the riskiest, green the safest), the chosen plan `trajectory` [T, 2]
    m in yellow, and `summary` (the step's key numbers) as a label above the ego."""
    t = stamp(time_s)
    label = TextPrimitive(pose=Pose(position=Vector3(z=EGO_HEIGHT_M + 1.0), orientation=Quaternion(w=1.0)),
                          billboard=True, font_size=14, scale_invariant=True, color=rgba((255, 255, 255)),
                          text=summary)  # fmt: skip
    entities = [SceneEntity(timestamp=t, frame_id=EGO_FRAME, id="plan", texts=[label],
                            lines=[_line(trajectory, rgba(PLAN_COLOUR), 4.0)])]  # fmt: skip
    if "candidates" in overlay:
        candidates, levels = overlay["candidates"], candidate_levels(overlay)
        order = np.argsort(levels, kind="stable")  # the best drawn last, on top
        lines = [_line(candidates[c], rgba(candidate_colour(float(levels[c])), 0.8), 1.5, quantum=CANDIDATE_QUANTUM_M)
                 for c in order]  # fmt: skip
        meta = _metadata(chosen=chosen_candidate(overlay, trajectory) + 1, of=candidates.shape[0])
        entities.insert(0, SceneEntity(timestamp=t, frame_id=EGO_FRAME, id="candidates", lines=lines, metadata=meta))
    return _replacing(entities, t)


def plan_summary(speed: float, trajectory: np.ndarray, overlay: Mapping[str, np.ndarray]) -> str:
    """The step's key numbers, as the video's header gives them: speed, then `sim.drawing.plan_numbers`."""
    return "  |  ".join([f"{speed:.1f} m/s", *plan_numbers(overlay, trajectory)])


# --- rasters -----------------------------------------------------------------------------------------


def raster_to_grid_cells(image: np.ndarray) -> np.ndarray:
    """A raster image [H, W, ...] (row 0 the far front, columns growing to the ego's right) as Foxglove grid
    cells [W, H, ...]: grid row j runs along the ego's y (left), grid column i along its x (forward), both
    growing from the raster's rear-right corner."""
    return np.ascontiguousarray(np.swapaxes(image[::-1, ::-1], 0, 1))


def grid_origin(raster: RasterConfig) -> tuple[float, float]:
    """Ego-frame (x, y), m, of the raster's rear-right corner: where grid cell (0, 0) starts."""
    row0, col0 = ego_origin_cell(raster)
    return (row0 - raster.size) * raster.resolution, (col0 - raster.size) * raster.resolution


def map_rgba(map_raster: np.ndarray) -> np.ndarray:
    """The map raster [3, H, W] as RGBA [H, W, 4] uint8 in the video's colours (`sim.render.map_image`),
    transparent off the road."""
    bgr = map_image(map_raster)
    alpha = np.where(map_raster.max(0) > 0, 255, 0).astype(np.uint8)
    return np.concatenate((bgr[..., ::-1], alpha[..., None]), axis=-1)


def bev_rgba(bev: np.ndarray) -> np.ndarray:
    """The BEV raster's returns [2, H, W] as RGBA [H, W, 4] uint8: the video's return colour, transparent where
    nothing was hit."""
    hit = bev_hits(bev)
    out = np.zeros(hit.shape + (4,), np.uint8)
    out[hit] = (*BEV_COLOUR[::-1], 255)
    return out


_RGBA_FIELDS = [PackedElementField(name=n, offset=i, type=PackedElementField.UINT8)
                for i, n in enumerate(("red", "green", "blue", "alpha"))]  # fmt: skip


def raster_grid(cells: np.ndarray, raster: RasterConfig, time_s: float, z: float) -> Grid:
    """A Foxglove grid in the ego frame, `z` m above the ground, of raster-layout RGBA `cells` [H, W, 4] uint8
    at `raster`'s geometry (fields red, green, blue, alpha: the 3D panel's RGBA colour mode)."""
    data = raster_to_grid_cells(cells)  # (W, H, 4): rows along ego y, columns along ego x
    x0, y0 = grid_origin(raster)
    return Grid(timestamp=stamp(time_s), frame_id=EGO_FRAME, column_count=data.shape[1],
                pose=Pose(position=Vector3(x=x0, y=y0, z=z), orientation=Quaternion(w=1.0)),
                cell_size=Vector2(x=raster.resolution, y=raster.resolution), cell_stride=data.shape[2],
                row_stride=data.shape[1] * data.shape[2], fields=_RGBA_FIELDS, data=data.tobytes())  # fmt: skip


# --- one step of one episode ---------------------------------------------------------------------------


def overlay_arrays(plan: PolicyOutput, b: int) -> dict[str, np.ndarray]:
    """What the policy's overlay holds for episode b, as numpy arrays by field name."""
    o = plan.overlay
    fields = {name: getattr(o, name) for name in o.__dataclass_fields__}
    return {name: value[b].detach().cpu().numpy() for name, value in fields.items() if value is not None}


def step_messages(state: WorldState, frame: SensorFrame, plan: PolicyOutput, b: int, raster: RasterConfig,
                  rasters: bool = True) -> dict[str, Message]:  # fmt: skip
    """Every Foxglove channel's message for episode b at this step (the observer's arguments); the raster
    grids only with `rasters`."""
    time_s = float(frame.time[b])
    numpy = lambda t: t[b].detach().cpu().numpy()  # noqa: E731
    pose, trajectory, overlay = numpy(frame.ego_pose), numpy(plan.trajectory), overlay_arrays(plan, b)
    a = state.agents
    agents = {name: numpy(getattr(a, name)) for name in ("xy", "yaw", "length", "width", "height", "kind",
                                                         "speed", "valid")}  # fmt: skip
    ego_size = (float(state.ego.length[b]), float(state.ego.width[b]))
    messages: dict[str, Message] = {
        "/foxglove/tf": ego_transform(pose, time_s),
        "/foxglove/truth": truth_scene(agents, ego_size, time_s),
        "/foxglove/plan": plan_scene(trajectory, overlay, plan_summary(float(state.ego.speed[b]), trajectory, overlay),
                                     time_s),
    }  # fmt: skip
    if rasters:
        messages["/foxglove/map"] = raster_grid(map_rgba(numpy(frame.map)), raster, time_s, MAP_Z)
        messages["/foxglove/bev"] = raster_grid(bev_rgba(numpy(frame.bev)), raster, time_s, BEV_Z)
    if "objects_xy" in overlay:
        prob = overlay.get("objects_prob", np.ones(len(overlay["objects_xy"])))
        messages["/foxglove/detections"] = detection_scene(overlay["objects_xy"], overlay.get("objects_cov"),
                                                           prob, time_s)  # fmt: skip
    if "tracks_xy" in overlay:
        prob = overlay.get("tracks_prob", np.ones(len(overlay["tracks_xy"])))
        messages["/foxglove/tracks"] = detection_scene(overlay["tracks_xy"], overlay.get("tracks_cov"), prob,
                                                       time_s, TRACK_COLOUR, "track")  # fmt: skip
    if "forecasts" in overlay:
        weights = overlay.get("forecast_weights", np.ones(overlay["forecasts"].shape[:2]))
        messages["/foxglove/forecast"] = forecast_scene(overlay["forecasts"], weights, time_s)
    return messages


class FoxgloveChannels:
    """The Foxglove channels of one drive log: each registered on its first message, schemas shared by
    message type; the rasters on every `raster_every`-th step."""

    def __init__(self, log: DriveLogWriter, raster: RasterConfig, raster_every: int = RASTER_EVERY):
        if not (isinstance(raster_every, int) and raster_every >= 1):
            raise ValueError(f"FoxgloveChannels.raster_every: expected an int >= 1, got {raster_every!r}")
        self.log, self.raster, self.raster_every = log, raster, raster_every
        self.steps = 0
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}

    def write(self, topic: str, time_s: float, message: Message) -> None:
        """One message on `topic` at `time_s` (s)."""
        if topic not in self._channels:
            name = message.DESCRIPTOR.full_name
            if name not in self._schemas:
                schema = file_descriptor_set(type(message))
                self._schemas[name] = self.log.register_schema(name, SCHEMA_ENCODING, schema)
            self._channels[topic] = self.log.register_encoded(topic, MESSAGE_ENCODING, self._schemas[name])
        self.log.write_encoded(self._channels[topic], time_s, message.SerializeToString())

    def write_step(self, state: WorldState, frame: SensorFrame, plan: PolicyOutput, b: int) -> None:
        """Episode b's messages of this step (`step_messages`)."""
        time_s = float(frame.time[b])
        rasters = self.steps % self.raster_every == 0
        for topic, message in step_messages(state, frame, plan, b, self.raster, rasters).items():
            self.write(topic, time_s, message)
        self.steps += 1
