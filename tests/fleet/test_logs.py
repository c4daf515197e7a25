"""Drive logs: exact round trips, readable by standard MCAP tools, clear errors for broken files."""

from __future__ import annotations

import base64
import contextlib
import json

import numpy as np
import pytest
import safetensors.numpy
import torch
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer

from sim.drivelogs.format import LEGACY_SCHEMA_NAME, DriveLogWriter, LogError, drive_metadata, read_drive
from sim.drivelogs.recorder import drive_name, record_drives
from sim.policies import make_policy
from sim.scenarios import load_scenario, scenario_path
from sim.types import SensorFrame


@pytest.fixture(scope="module")
def drives(tmp_path_factory):
    """Two recorded 1 s cut_in drives, driven by the rule-based planner on ground truth."""
    scenario = load_scenario(scenario_path("cut_in")).with_overrides({"duration": 1.0})
    out = tmp_path_factory.mktemp("logs")
    return record_drives(scenario, [3, 4], make_policy("pdm-gt"), out)


def test_recorded_drives_hold_every_topic_and_rebuild_the_contracts(drives):
    assert [p.name for p in drives] == [f"{drive_name('cut_in', 3)}.mcap", f"{drive_name('cut_in', 4)}.mcap"]
    records = list(read_drive(drives[0]))
    topics = {r.topic for r in records}
    assert {"/sensor/frame", "/ego/state", "/agents/truth", "/stack/plan"} <= topics
    frames = [r for r in records if r.topic == "/sensor/frame"]
    # 10 steps, then the final state's frame
    assert len(frames) == 11 and [r.time_s for r in frames] == sorted(r.time_s for r in frames)
    frame = frames[0].contract()
    assert isinstance(frame, SensorFrame) and frame.bev.shape == (1, 2, 128, 128)
    meta = drive_metadata(drives[1])
    assert (meta["drive"], meta["scenario"], meta["seed"], meta["format"]) == ("cut_in-000004", "cut_in", "4", "2")
    assert (meta["family"], meta["policy"]) == ("cut_in", "pdm-gt")  # the registered name, not the class's


def test_tensors_round_trip_exactly_for_every_dtype(tmp_path):
    tensors = {
        "f32": torch.randn(3, 4),
        "i64": torch.arange(5),
        "mask": torch.tensor([True, False, True]),
        "u8": torch.randint(0, 255, (2, 2), dtype=torch.uint8),
        "scalar": torch.tensor(2.5),
    }
    with DriveLogWriter(tmp_path / "d.mcap", "d") as log:
        log.write("/stack/plan", 1.25, tensors)
    (record,) = list(read_drive(tmp_path / "d.mcap"))
    assert record.topic == "/stack/plan" and record.time_s == 1.25
    for name, value in tensors.items():
        assert np.array_equal(record.tensors[name], value.numpy()) and record.tensors[name].dtype == value.numpy().dtype


def test_standard_mcap_readers_open_the_log(drives):
    with open(drives[0], "rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert {c.topic for c in summary.channels.values()} >= {"/sensor/frame", "/ego/state", "/agents/truth"}
        encodings = {c.topic.split("/")[1]: set() for c in summary.channels.values()}
        for c in summary.channels.values():
            encodings[c.topic.split("/")[1]].add(c.message_encoding)
        assert encodings.pop("foxglove") == {"protobuf"}  # Foxglove's channels, beside the tensor channels
        assert set.union(*encodings.values()) == {"safetensors"}
        assert {c.compression for c in summary.chunk_indexes} == {"zstd"}
        _, channel, message = next(reader.iter_messages(topics=["/ego/state"]))
        assert safetensors.numpy.load(message.data)["ego.xy"].shape == (1, 2)  # any safetensors reader opens it


def test_reading_a_whole_drive_passes_over_the_foxglove_channels_but_not_one_asked_for(drives):
    topics = {record.topic for record in read_drive(drives[0])}
    assert "/sensor/frame" in topics and not any(topic.startswith("/foxglove/") for topic in topics)
    with pytest.raises(LogError, match="/foxglove/tf .*is not a drivestack channel"):
        next(iter(read_drive(drives[0], {"/foxglove/tf"})))


def test_a_log_of_format_1_json_messages_still_reads(tmp_path):
    """Logs recorded before the binary encoding: JSON messages with base64 tensors under a JSON schema."""
    xy = np.array([[1.5, -2.0]], dtype="<f4")
    message = {"time_s": 0.5, "tensors": {"ego.xy": {"dtype": "float32", "shape": [1, 2],
                                                     "data": base64.b64encode(xy.tobytes()).decode()}}}  # fmt: skip
    with open(tmp_path / "old.mcap", "wb") as stream:
        writer = Writer(stream, compression=CompressionType.ZSTD)
        writer.start(profile="drivestack", library="drivestack drive log 1")
        schema = writer.register_schema(LEGACY_SCHEMA_NAME, "jsonschema", b"{}")
        channel = writer.register_channel("/stack/plan", "json", schema)
        writer.add_message(channel, log_time=500_000_000, data=json.dumps(message).encode(), publish_time=0)
        writer.finish()
    (record,) = list(read_drive(tmp_path / "old.mcap"))
    assert record.time_s == 0.5 and np.array_equal(record.tensors["ego.xy"], xy)


@pytest.mark.parametrize(
    "data, says",
    [
        (b"\x01", "shorter than the 8-byte header length"),
        ((10**9).to_bytes(8, "little") + b"{}", "header of 1000000000 bytes"),
        (b"", "shorter than the 8-byte header length"),
        ((1).to_bytes(8, "little") + b"7", "not a JSON object"),
        ((4).to_bytes(8, "little") + b'{"x"', "Expecting"),
    ],
)
def test_a_malformed_message_is_a_log_error_naming_the_file(tmp_path, data, says):
    with open(tmp_path / "bad.mcap", "wb") as stream:
        writer = Writer(stream)
        writer.start(profile="drivestack", library="test")
        channel = writer.register_channel("/stack/plan", "safetensors", 0)
        writer.add_message(channel, log_time=0, data=data, publish_time=0)
        writer.finish()
    with pytest.raises(LogError, match=rf"bad\.mcap, /stack/plan #0: malformed drivestack message \(.*{says}"):
        list(read_drive(tmp_path / "bad.mcap"))


def test_a_message_whose_bytes_do_not_fit_its_shape_is_refused(tmp_path):
    header = json.dumps(
        {"__metadata__": {"time_s": "0"}, "x": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 8]}}
    )
    data = len(header).to_bytes(8, "little") + header.encode() + bytes(8)
    with open(tmp_path / "bad.mcap", "wb") as stream:
        writer = Writer(stream)
        writer.start(profile="drivestack", library="test")
        writer.add_message(writer.register_channel("/stack/plan", "safetensors", 0), log_time=0, data=data,
                           publish_time=0)  # fmt: skip
        writer.finish()
    with pytest.raises(LogError, match=r"bytes 0\.\.8 do not hold shape \[1000\]"):
        list(read_drive(tmp_path / "bad.mcap"))


def test_a_truncated_log_names_the_file_and_the_offset(drives, tmp_path):
    data = drives[0].read_bytes()
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(LogError, match=r"broken.mcap: truncated or corrupted at byte \d+"):
        list(read_drive(broken))


def test_a_flipped_byte_is_caught_by_the_chunk_checksum(drives, tmp_path):
    data = bytearray(drives[0].read_bytes())
    data[len(data) // 3] ^= 0xFF
    broken = tmp_path / "flipped.mcap"
    broken.write_bytes(bytes(data))
    with pytest.raises(LogError, match="flipped.mcap"):
        list(read_drive(broken))


def test_a_failed_drive_leaves_no_file_and_a_missing_log_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="sensor died"), DriveLogWriter(tmp_path / "x.mcap", "x") as log:
        log.write("/ego/state", 0.0, {"ego.xy": torch.zeros(1, 2)})
        raise RuntimeError("sensor died")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(LogError, match="not found"):
        list(read_drive(tmp_path / "x.mcap"))
    with pytest.raises(ValueError, match="dtype complex64"):
        DriveLogWriter(tmp_path / "y.mcap", "y").write("/ego/state", 0.0, {"z": np.zeros(2, np.complex64)})


def test_record_and_index_commands(tmp_path, capsys):
    from stack.cli import main

    assert main(["fleet", "record", "--suite", "ghost_road", "--seeds", "2", "--out", str(tmp_path / "logs")]) == 0
    assert sorted(p.name for p in (tmp_path / "logs").glob("*.mcap")) == [
        "ghost_road-000000.mcap",
        "ghost_road-000001.mcap",
    ]
    (tmp_path / "logs" / "junk.mcap").write_bytes(b"not an mcap file")
    assert main(["fleet", "index", "--logs", str(tmp_path / "logs")]) == 0
    out = capsys.readouterr().out
    assert "2 drives" in out and "skipped junk.mcap" in out


def test_record_sets_the_raster_duration_batches_and_channels_and_indexes_last(tmp_path, capsys):
    from stack.cli import main

    out = tmp_path / "small"
    args = ["fleet", "record", "--suite", "demo", "--seeds", "3", "--first-seed", "7", "--duration", "0.5",
            "--raster-size", "32", "--resolution", "1", "--batch-size", "2", "--no-foxglove", "--out", str(out)]
    assert main(args) == 0
    index = json.loads((out / "index.json").read_text())
    drives = [d["drive"] for d in index["drives"]]
    assert len(drives) == 4 * 3 and drives[:3] == ["crosswalk_crowd-000007", "crosswalk_crowd-000008",
                                                   "crosswalk_crowd-000009"]  # the suite's order  # fmt: skip
    first = index["drives"][0]
    raster = json.loads(first["metadata"]["raster"])
    assert (raster["size"], raster["resolution"]) == (32, 1.0)
    assert (first["metadata"]["suite"], first["result"]["steps"], len(first["frame_times"])) == ("demo", "5", 6)
    with open(out / first["file"], "rb") as stream:
        topics = {c.topic for c in make_reader(stream).get_summary().channels.values()}
    assert "/sensor/ghosts" in topics and not any(t.startswith("/foxglove") for t in topics)
    assert "12 drives indexed" in capsys.readouterr().out
    assert main([*args[:-2], "--out", str(tmp_path / "x"), "--batch-size", "0"]) == 2
    assert "batch_size: expected an int >= 1" in capsys.readouterr().err


def test_a_suite_run_records_the_same_drives_as_fleet_record(tmp_path):
    """`drivestack sim --record` logs any suite run (any policy or runtime backend) in the same format."""
    from stack.cli import main

    args = ["--suite", "ghost_road", "--seeds", "2", "--first-seed", "5"]
    assert main(["sim", *args, "--policy", "pdm-gt", "--out", str(tmp_path / "sim"), "--record",
                 str(tmp_path / "a")]) == 0  # fmt: skip
    assert main(["fleet", "record", *args, "--out", str(tmp_path / "b")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").glob("*.mcap"))
    assert names == ["ghost_road-000005.mcap", "ghost_road-000006.mcap"]
    for name in names:
        a, b = list(read_drive(tmp_path / "a" / name)), list(read_drive(tmp_path / "b" / name))
        assert [(r.topic, r.time_s) for r in a] == [(r.topic, r.time_s) for r in b]
        assert all(np.array_equal(x.tensors[k], y.tensors[k]) for x, y in zip(a, b, strict=True) for k in x.tensors)
        assert drive_metadata(tmp_path / "a" / name)["policy"] == drive_metadata(tmp_path / "b" / name)["policy"]


def test_a_frame_logged_without_a_field_of_todays_contract_is_a_log_error_naming_it(drives, tmp_path):
    from sim.drivelogs.series import read_series

    frame = next(r for r in read_drive(drives[0]) if r.topic == "/sensor/frame")
    old = {name: torch.from_numpy(value) for name, value in frame.tensors.items() if not name.startswith("frame.lanes")}
    with DriveLogWriter(tmp_path / "old.mcap", "old") as log:
        log.write("/sensor/frame", frame.time_s, old)
    with pytest.raises(LogError, match=r"old.mcap: topic /sensor/frame .*missing tensor 'frame.lanes'"):
        read_series(tmp_path / "old.mcap", 1, ("/sensor/frame",))


def test_mutated_messages_fail_only_with_the_errors_the_reader_names():
    """Seeded mutations of a real message: decoding either succeeds or raises what `read_drive` turns into a
    LogError, never anything else (an AttributeError would escape as a crash)."""
    from sim.drivelogs.messages import decode, encode

    good = encode(1.0, {"a": torch.arange(6.0).reshape(2, 3), "m": torch.tensor([True, False])})
    rng = np.random.default_rng(0)
    for _ in range(500):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        with contextlib.suppress(ValueError, KeyError, TypeError):
            decode(bytes(data[: int(rng.integers(0, len(data) + 1))]), "safetensors")
