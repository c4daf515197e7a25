"""ETH/UCY parsing, resampling to the sim step, and replay windows (small files written here)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.ethucy import TrackFormatError, cut_window, load_tracks, resample

# Two agents: 1 walks east at 1 m per 0.4 s sample; 2 walks north, appearing later.
ROWS = [
    (780, 1, 0.0, 0.0),
    (790, 1, 1.0, 0.0),
    (800, 1, 2.0, 0.0),
    (810, 1, 3.0, 0.5),
    (800, 2, 5.0, 5.0),
    (810, 2, 5.0, 6.0),
    (820, 2, 5.0, 7.0),
]


def _write(tmp_path, rows, name="tracks.txt", frame_fmt="{}", sep="\t"):
    path = tmp_path / name
    path.write_text("".join(f"{frame_fmt.format(f)}{sep}{a}.0{sep}{x}{sep}{y}\n" for f, a, x, y in rows))
    return path


def test_parses_integer_and_float_frame_ids_alike(tmp_path):
    ints = load_tracks(_write(tmp_path, ROWS, "a.txt", "{}"))
    floats = load_tracks(_write(tmp_path, ROWS, "b.txt", "{}.0", sep="  "))
    assert ints.agent_ids == floats.agent_ids == (1, 2)
    for t_a, t_b, xy_a, xy_b in zip(ints.times, floats.times, ints.xy, floats.xy, strict=True):
        assert np.array_equal(t_a, t_b) and np.array_equal(xy_a, xy_b)
    assert ints.times[0][0] == pytest.approx(780 / 10 * 0.4)
    assert np.array_equal(ints.xy[0][-1], [3.0, 0.5])


@pytest.mark.parametrize(
    "bad_line,message",
    [
        ("800\t3.0\t1.0\n", "expected 4 columns"),
        ("8x0\t3.0\t1.0\t2.0\n", r"frame id \(column 1\) is not a number"),
        ("800.5\t3.0\t1.0\t2.0\n", "not a whole number"),
        ("800\t3.0\tnan\t2.0\n", "not finite"),
        ("780\t1.0\t9.0\t9.0\n", "appears twice"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    path = _write(tmp_path, ROWS[:2])
    path.write_text(path.read_text() + "\n" + bad_line)  # line 3 blank, line 4 bad
    with pytest.raises(TrackFormatError, match=message) as err:
        load_tracks(path)
    assert f"{path}:4:" in str(err.value)


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# nothing here\n")
    with pytest.raises(TrackFormatError, match="no tracks"):
        load_tracks(path)


def test_resampling_hits_original_samples_exactly(tmp_path):
    grid = resample(load_tracks(_write(tmp_path, ROWS)), dt=0.1)
    assert grid.start_step == round(780 / 10 * 0.4 / 0.1)  # 312
    for frame, agent, x, y in ROWS:
        k = round(frame / 10 * 4) - grid.start_step  # 4 sim steps per 0.4 s sample
        a = list(grid.agent_ids).index(agent)
        assert grid.valid[a, k]
        assert grid.xy[a, k, 0] == x and grid.xy[a, k, 1] == y  # exact, not approximately
    # Between samples the position is interpolated linearly.
    assert grid.xy[0, 1, 0] == pytest.approx(0.25) and grid.xy[0, 2, 0] == pytest.approx(0.5)


def test_resampling_never_extrapolates(tmp_path):
    grid = resample(load_tracks(_write(tmp_path, ROWS)), dt=0.1)
    # Agent 1 spans frames 780..810 (steps 0..12), agent 2 frames 800..820 (steps 8..16).
    assert np.array_equal(np.flatnonzero(grid.valid[0]), np.arange(0, 13))
    assert np.array_equal(np.flatnonzero(grid.valid[1]), np.arange(8, 17))
    assert grid.steps == 17
    assert np.all(grid.xy[~grid.valid] == 0.0)


def test_holes_in_a_track_are_not_bridged(tmp_path):
    rows = [(0, 1, 0.0, 0.0), (10, 1, 1.0, 0.0), (50, 1, 5.0, 0.0), (60, 1, 6.0, 0.0)]
    grid = resample(load_tracks(_write(tmp_path, rows)), dt=0.1)
    assert grid.valid[0, :5].all() and grid.valid[0, 20:].all()
    assert not grid.valid[0, 5:20].any()


def test_heading_and_speed_use_only_the_past(tmp_path):
    base = resample(load_tracks(_write(tmp_path, ROWS, "a.txt")), dt=0.1)
    changed_rows = [r if r[:2] != (810, 1) else (810, 1, 3.0, -4.0) for r in ROWS]
    changed = resample(load_tracks(_write(tmp_path, changed_rows, "b.txt")), dt=0.1)
    # Sample 810 of agent 1 sits at step 12; everything up to step 8 (the previous sample) is unchanged.
    assert np.array_equal(base.yaw[0, :9], changed.yaw[0, :9])
    assert np.array_equal(base.speed[0, :9], changed.speed[0, :9])
    assert not np.array_equal(base.yaw[0, 9:13], changed.yaw[0, 9:13])
    # Walking east at 1 m / 0.4 s: heading 0, speed 2.5 m/s; agent 2 heads north.
    assert base.yaw[0, 4] == pytest.approx(0.0) and base.speed[0, 4] == pytest.approx(2.5)
    assert base.yaw[1, 12] == pytest.approx(np.pi / 2)
    # The first point of a track has no past.
    assert not base.has_past[0, 0] and base.has_past[0, 1]


def test_still_pedestrians_keep_their_last_heading(tmp_path):
    rows = [(0, 1, 0.0, 0.0), (10, 1, 0.0, 1.0), (20, 1, 0.0, 1.0), (30, 1, 0.0, 1.0)]
    grid = resample(load_tracks(_write(tmp_path, rows)), dt=0.1)
    assert np.allclose(grid.yaw[0, 1:], np.pi / 2)
    assert np.allclose(grid.speed[0, 5:], 0.0)


def test_cut_window_limits_agents_and_pads_past_the_end(tmp_path):
    grid = resample(load_tracks(_write(tmp_path, ROWS)), dt=0.1)
    window = cut_window(grid, start_step=0, steps=30, max_agents=1)
    assert window.xy.shape == (1, 30, 2) and window.valid.shape == (1, 30)
    assert list(window.agent_ids) == [1]  # present first
    assert not window.valid[0, 0] and window.valid[0, 1:13].all() and not window.valid[0, 13:].any()
    both = cut_window(grid, start_step=10, steps=5, max_agents=4)
    assert list(both.agent_ids) == [1, 2]
    assert np.array_equal(both.xy[1, 0], grid.xy[1, 10]) and both.yaw[1, 0] == pytest.approx(np.pi / 2)
    assert both.speed[0, 0] == pytest.approx(np.hypot(0.25, 0.125) / 0.1)
