"""The log index: broken logs reported and skipped, random access, splits by drive."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sim.drivelogs.index as index_module
from sim.drivelogs.format import LogError, read_drive
from sim.drivelogs.index import INDEX_FILE, build_index, in_validation, read_frame, split_drives
from sim.drivelogs.recorder import record_drives
from sim.policies import make_policy
from sim.scenarios import load_scenario, scenario_path


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    """Three recorded 1 s drives and one truncated log beside them."""
    out = tmp_path_factory.mktemp("fleet-logs")
    scenario = load_scenario(scenario_path("crosswalk_crowd")).with_overrides({"duration": 1.0})
    paths = record_drives(scenario, [0, 1, 2], make_policy("pdm-gt"), out)
    data = paths[0].read_bytes()
    (out / "zz-truncated.mcap").write_bytes(data[: len(data) // 2])
    return out


def test_the_index_lists_good_drives_and_reports_the_broken_log(log_dir):
    index = build_index(log_dir)
    assert [d.drive for d in index.drives] == [
        "crosswalk_crowd-000000",
        "crosswalk_crowd-000001",
        "crosswalk_crowd-000002",
    ]
    assert all(d.frames == 11 and d.steps == 10 for d in index.drives)  # the final state's frame too
    assert (
        list(index.broken) == ["zz-truncated.mcap"]
        and "truncated or corrupted at byte" in index.broken["zz-truncated.mcap"]
    )
    saved = json.loads((log_dir / INDEX_FILE).read_text())
    assert len(saved["drives"]) == 3 and "zz-truncated.mcap" in saved["broken"]


def test_an_unchanged_log_is_not_read_again(log_dir, monkeypatch):
    build_index(log_dir)

    def fail(path):
        raise AssertionError(f"{path} was re-read")

    monkeypatch.setattr(index_module, "_entry", fail)
    monkeypatch.setattr(index_module, "metadata_records", fail)
    try:
        build_index(log_dir)
    except AssertionError as exc:
        assert "zz-truncated" in str(exc)  # only the broken log, which has no cached entry, is read again


def test_random_access_returns_the_frame_a_sequential_read_sees(log_dir):
    index = build_index(log_dir)
    entry = index.drives[1]
    sequential = [r for r in read_drive(index.path(entry)) if r.topic in ("/sensor/frame", "/agents/truth")]
    records = read_frame(index, entry, 7, ["/sensor/frame", "/agents/truth"])
    want = [r for r in sequential if r.time_s == entry.frame_times[7]]
    for record in want:
        for name, value in record.tensors.items():
            assert np.array_equal(records[record.topic].tensors[name], value)
    assert records["/sensor/frame"].contract().bev.shape[0] == 1
    with pytest.raises(IndexError, match="frame 11 out of range"):
        read_frame(index, entry, 11)


def test_a_log_replaced_at_the_same_path_is_read_anew_not_through_the_old_chunk_index(log_dir, tmp_path):
    """Span reads keep each file's summary; a different file at the same path must not reuse it."""
    path = tmp_path / "drive.mcap"
    path.write_bytes((log_dir / "crosswalk_crowd-000000.mcap").read_bytes())
    first = index_module.read_span(path, 0.0, 0.5, ["/sensor/frame"])
    path.write_bytes((log_dir / "crosswalk_crowd-000001.mcap").read_bytes())
    second = index_module.read_span(path, 0.0, 0.5, ["/sensor/frame"])
    expected = [r for r in read_drive(path, {"/sensor/frame"}) if r.time_s <= 0.5]
    assert len(second) == len(expected) == len(first)
    for got, want in zip(second, expected, strict=True):
        assert np.array_equal(got.tensors["frame.bev"], want.tensors["frame.bev"])


def test_splits_are_by_drive_deterministic_and_stable():
    names = [f"drive-{i:04d}" for i in range(400)]

    class Entry:
        def __init__(self, drive):
            self.drive = drive

    drives = [Entry(n) for n in names]
    train, val = split_drives(drives, 0.25)
    assert not {d.drive for d in train} & {d.drive for d in val}
    assert len(train) + len(val) == 400 and 70 <= len(val) <= 130
    again_train, again_val = split_drives(drives, 0.25)
    assert [d.drive for d in again_val] == [d.drive for d in val]
    more = drives + [Entry(f"new-{i}") for i in range(50)]
    _, val_more = split_drives(more, 0.25)
    assert {d.drive for d in val} <= {d.drive for d in val_more}  # a new drive never moves an old one
    assert in_validation("x", 0.0) is False
    with pytest.raises(ValueError, match="val_fraction"):
        split_drives(drives, 1.0)


def test_frames_of_one_drive_never_land_on_both_sides(log_dir):
    index = build_index(log_dir)
    train, val = split_drives(index.drives, 0.5)
    frames_train = {(d.drive, t) for d in train for t in d.frame_times}
    frames_val = {(d.drive, t) for d in val for t in d.frame_times}
    assert not {d for d, _ in frames_train} & {d for d, _ in frames_val}


def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(LogError, match="not found"):
        build_index(tmp_path / "nope")


def test_a_span_is_every_message_of_its_topics_and_times_a_sequential_read_sees(log_dir):
    path = log_dir / "crosswalk_crowd-000002.mcap"
    topics = ["/sensor/frame", "/agents/labels", "/ego/state"]
    times = sorted({r.time_s for r in read_drive(path, set(topics))})
    start, end = times[2], times[6]  # as logged (float32 sums of the step)
    span = index_module.read_span(path, start, end, topics)
    sequential = [r for r in read_drive(path, set(topics)) if start <= r.time_s <= end]
    assert [(r.topic, r.time_s) for r in span] == [(r.topic, r.time_s) for r in sequential]
    for got, want in zip(span, sequential, strict=True):
        assert got.tensors.keys() == want.tensors.keys()
        assert all(np.array_equal(got.tensors[k], want.tensors[k]) for k in want.tensors)


def test_a_chunk_holds_at_most_two_frames_so_a_span_decompresses_little(log_dir):
    """`sim.drivelogs.format.CHUNK_BYTES`: two 128 x 128 frames per chunk, not MCAP's default megabyte (three)."""
    from sim.drivelogs.chunks import chunk_messages, chunk_records

    path = log_dir / "crosswalk_crowd-000000.mcap"
    stat = path.stat()
    summary = index_module._summary(str(path), stat.st_size, stat.st_mtime_ns)
    frame_channel = {i for i, c in summary.channels.items() if c.topic == "/sensor/frame"}
    with open(path, "rb") as stream:
        frames = [len(list(chunk_messages(chunk_records(stream, c), c, frame_channel, 0, 2**63)))
                  for c in summary.chunk_indexes]  # fmt: skip
    assert sum(frames) == 11 and max(frames) == 2


def _chunk_damaged(log_dir, tmp_path, damage) -> tuple:
    """A copy of a log whose second chunk `damage(bytes, chunk_index)` rewrote, and that chunk's time."""
    source = log_dir / "crosswalk_crowd-000001.mcap"
    stat = source.stat()
    chunk = index_module._summary(str(source), stat.st_size, stat.st_mtime_ns).chunk_indexes[1]
    path = tmp_path / "damaged.mcap"
    path.write_bytes(damage(bytearray(source.read_bytes()), chunk))
    return path, chunk.message_start_time / 1e9


def test_a_corrupted_chunk_is_a_log_error_naming_the_file_and_byte(log_dir, tmp_path):
    def flip(data, chunk):
        data[chunk.chunk_start_offset + chunk.chunk_length - 100] ^= 0xFF  # inside the compressed records
        return bytes(data)

    path, time_s = _chunk_damaged(log_dir, tmp_path, flip)
    with pytest.raises(LogError, match=r"damaged\.mcap: truncated or corrupted at byte \d+"):
        index_module.read_span(path, time_s, time_s, ["/sensor/frame", "/ego/state", "/agents/truth"])


def test_a_chunk_declaring_a_huge_size_is_refused_without_allocating_it(log_dir, tmp_path):
    def inflate(data, chunk):
        size_at = chunk.chunk_start_offset + 9 + 16  # opcode, length, start and end times, then the size
        data[size_at : size_at + 8] = (1 << 40).to_bytes(8, "little")
        return bytes(data)

    path, time_s = _chunk_damaged(log_dir, tmp_path, inflate)
    with pytest.raises(LogError, match="do not fit the chunk"):
        index_module.read_span(path, time_s, time_s, ["/sensor/frame", "/ego/state", "/agents/truth"])


def test_a_log_whose_frames_break_their_contract_is_reported_broken_when_indexed(log_dir, tmp_path):
    """Indexing checks every frame once, so the datasets can read them without checking again."""
    from sim.drivelogs.format import DriveLogWriter

    good = next(iter(read_drive(log_dir / "crosswalk_crowd-000000.mcap", {"/sensor/frame"})))
    tensors = {**good.tensors, "frame.bev": np.full_like(good.tensors["frame.bev"], np.nan)}
    with DriveLogWriter(tmp_path / "nan.mcap", "nan-drive") as log:
        log.write("/sensor/frame", 0.0, tensors)
    index = build_index(tmp_path, save=False)
    assert index.drives == [] and "finite" in index.broken["nan.mcap"]
